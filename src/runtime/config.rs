//! Loading the config: the file is parsed, then every component checks its
//! own section (the config itself, the playbooks, Discord), so `config` needs
//! to know none of them.

use std::path::Path;

use crate::config::{Config, ConfigError};

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.into(), message })
    }

    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = if text.trim().is_empty() { Config::default() } else { serde_yaml::from_str(text).map_err(|e| e.to_string())? };
        let problems: Vec<String> = [config.problems(), crate::plan::playbooks::config_problems(&config), crate::discord::config_problems(&config.discord)].concat();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(config)
    }
}
