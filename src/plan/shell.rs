//! Quoting for the commands lifeboat renders for humans to run (a step's
//! command, "afterwards, by hand", Discord's "Show commands"): every value
//! interpolated into one passes through [`quote`], so a name, label or
//! config value can never become shell syntax when the command is pasted.

use std::borrow::Cow;

/// Characters that mean nothing to a POSIX shell in any position of a word
/// (no globbing, expansion, brace or tilde expansion, word splitting).
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b'%' | b'+' | b',')
}

/// `value` as one shell word: unchanged when it is plain (Kubernetes names
/// are), else in single quotes, each `'` written as `'\''`.
pub fn quote(value: &str) -> Cow<'_, str> {
    if !value.is_empty() && value.bytes().all(is_plain) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(format!("'{}'", value.replace('\'', r"'\''")))
}

/// `value` for a `# comment`: quoted, and with line breaks written as `\n`,
/// since a line break ends a comment whatever the quotes around it.
pub fn comment(value: &str) -> String {
    quote(&value.replace('\n', "\\n").replace('\r', "\\r")).into_owned()
}

/// A here-document delimiter that no line of `body` equals, so the body
/// cannot end the document early and run what follows as commands.
pub fn heredoc_delimiter(body: &str) -> String {
    let mut delimiter = "EOF".to_string();
    let mut n = 0;
    while body.lines().any(|line| line == delimiter) {
        n += 1;
        delimiter = format!("EOF_{n}");
    }
    delimiter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_as_they_are() {
        for word in ["postgres-1", "database", "cluster.postgresql.cnpg.io", "--replicas=0", "node.kubernetes.io/unreachable"] {
            assert_eq!(quote(word), word);
        }
    }

    #[test]
    fn anything_else_is_one_single_quoted_word() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("x; rm -rf /"), "'x; rm -rf /'");
        assert_eq!(quote("$(id)"), "'$(id)'");
        assert_eq!(quote("`id`"), "'`id`'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("{a,b}"), "'{a,b}'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn a_comment_value_stays_on_its_line() {
        assert_eq!(comment("a\nrm -rf /"), "'a\\nrm -rf /'");
        assert_eq!(comment("plain"), "plain");
    }

    #[test]
    fn the_heredoc_delimiter_is_no_line_of_the_body() {
        assert_eq!(heredoc_delimiter("a: 1\n"), "EOF");
        assert_eq!(heredoc_delimiter("a: 1\nEOF\nEOF_1\n"), "EOF_2");
    }
}
