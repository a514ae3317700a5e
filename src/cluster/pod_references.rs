//! What a pod's containers name outside themselves, kept as bare names: the
//! host in each env value that names one (never the rest of the value, e.g. a
//! password in a URL) and the Secrets env, envFrom and volumes read. The
//! node-loss plan reads them to find the database an app uses; the cache
//! keeps these few names instead of the env lists.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The hosts and Secrets one container's `env` names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvReferences {
    pub hosts: Vec<String>,
    pub secrets: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_from: Option<ValueFrom>,
}
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ValueFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key_ref: Option<Named>,
}
#[derive(Deserialize, Serialize)]
struct Named {
    #[serde(default)]
    name: String,
}
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_ref: Option<Named>,
}

/// `env` ⇄ its references (serialized back as env entries naming only them).
pub mod env {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EnvReferences, D::Error> {
        let vars = Option::<Vec<EnvVar>>::deserialize(d)?.unwrap_or_default();
        let mut refs = EnvReferences::default();
        for var in vars {
            if let Some(host) = var.value.as_deref().and_then(|v| host_in(&var.name, v)) {
                push_new(&mut refs.hosts, host);
            }
            if let Some(secret) = var.value_from.and_then(|f| f.secret_key_ref).filter(|s| !s.name.is_empty()) {
                push_new(&mut refs.secrets, secret.name);
            }
        }
        refs.hosts.shrink_to_fit();
        refs.secrets.shrink_to_fit();
        Ok(refs)
    }

    pub fn serialize<S: Serializer>(refs: &EnvReferences, s: S) -> Result<S::Ok, S::Error> {
        let hosts = refs.hosts.iter().map(|h| EnvVar { name: String::new(), value: Some(h.clone()), value_from: None });
        let secrets = refs.secrets.iter().map(|n| EnvVar { name: String::new(), value: None, value_from: Some(ValueFrom { secret_key_ref: Some(Named { name: n.clone() }) }) });
        s.collect_seq(hosts.chain(secrets))
    }
}

/// `envFrom` ⇄ the Secrets it names.
pub mod env_from {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let sources = Option::<Vec<EnvFromSource>>::deserialize(d)?.unwrap_or_default();
        let mut out = vec![];
        for name in sources.into_iter().filter_map(|s| s.secret_ref).map(|s| s.name).filter(|n| !n.is_empty()) {
            push_new(&mut out, name);
        }
        out.shrink_to_fit();
        Ok(out)
    }

    pub fn serialize<S: Serializer>(secrets: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(secrets.iter().map(|n| EnvFromSource { secret_ref: Some(Named { name: n.clone() }) }))
    }
}

fn push_new(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The host the env variable `name` = `value` names, lowercased: the host of
/// a URL (`postgres://u:p@pg-rw.db.svc:5432/app` → `pg-rw.db.svc`), of a libpq
/// keyword string (`host=pg-rw dbname=app`), or the value itself when it is a
/// `host[:port]` that looks like one: dotted or dashed (`pg-rw`,
/// `maria.db:3306`), or any name in a variable named for a host (`DB_HOST=maria`).
/// None for anything else (`true`, `info`, `Europe/Paris`), so the cache keeps no such values.
pub fn host_in(name: &str, value: &str) -> Option<String> {
    let value = value.trim();
    let candidate = if let Some(at) = value.find("host=") {
        value[at + 5..].split_whitespace().next()?
    } else if let Some(at) = value.find("://") {
        let authority = value[at + 3..].split(['/', '?', '#']).next()?;
        authority.rsplit('@').next()?
    } else if value.contains(['.', '-']) || name.to_ascii_uppercase().contains("HOST") {
        value
    } else {
        return None;
    };
    let host = candidate.split(':').next()?.trim_end_matches('.').to_ascii_lowercase();
    let dns_like =
        !host.is_empty() && host.len() <= 253 && host.starts_with(|c: char| c.is_ascii_alphanumeric()) && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    dns_like.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_urls_keyword_strings_and_bare_hosts_and_nothing_else() {
        assert_eq!(host_in("DATABASE_URL", "postgres://app:s3cr:et@Postgres-RW.database.svc:5432/app?sslmode=require").as_deref(), Some("postgres-rw.database.svc"));
        assert_eq!(host_in("JDBC", "jdbc:mariadb://mariadb-primary.database:3306/nextcloud").as_deref(), Some("mariadb-primary.database"));
        assert_eq!(host_in("DSN", "host=postgres-rw port=5432 dbname=app").as_deref(), Some("postgres-rw"));
        assert_eq!(host_in("INIT_POSTGRES_HOST", "postgres-rw.database.svc.cluster.local.").as_deref(), Some("postgres-rw.database.svc.cluster.local"));
        assert_eq!(host_in("DB_HOST", "mariadb:3306").as_deref(), Some("mariadb"));
        assert_eq!(host_in("DB", "maria-primary").as_deref(), Some("maria-primary"));
        assert_eq!(host_in("MODE", "production"), None, "a bare word only where a host is expected");
        assert_eq!(host_in("DB_HOST", "a value with spaces"), None);
        assert_eq!(host_in("CONFIG", "/data/config"), None);
        assert_eq!(host_in("DB_HOST", ""), None);
    }

    #[derive(Deserialize, Serialize)]
    struct Container {
        #[serde(default, with = "env")]
        env: EnvReferences,
        #[serde(default, rename = "envFrom", with = "env_from")]
        env_from: Vec<String>,
    }

    #[test]
    fn env_keeps_only_hosts_and_secret_names_and_round_trips() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "env": [
                {"name": "DATABASE_URL", "value": "postgres://app:hunter2@postgres-rw.database.svc:5432/app"},
                {"name": "TZ", "value": "Europe/Paris"},
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "postgres-app", "key": "password"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "envFrom": [{"secretRef": {"name": "app-secret"}}, {"configMapRef": {"name": "settings"}}]
        }))
        .unwrap();
        assert_eq!(c.env, EnvReferences { hosts: vec!["postgres-rw.database.svc".into()], secrets: vec!["postgres-app".into()] });
        assert_eq!(c.env_from, vec!["app-secret".to_string()]);
        let again: Container = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!((again.env, again.env_from), (c.env.clone(), c.env_from.clone()));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let empty: Container = serde_json::from_value(serde_json::json!({"env": null})).unwrap();
        assert_eq!(empty.env, EnvReferences::default());
    }
}
