//! How the CLI reaches the cluster: the kubeconfig and context chosen on the
//! command line (`--kubeconfig`, `--context`), else kube's defaults (in-cluster
//! service account, `$KUBECONFIG`, `~/.kube/config`).

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

static OPTIONS: OnceLock<ConnectOptions> = OnceLock::new();

/// Set once, from the command line, before any client is made.
pub fn set_options(options: ConnectOptions) {
    let _ = OPTIONS.set(options);
}

/// A client for the chosen cluster; `why` says what it is for in the error.
pub async fn client(why: &str) -> anyhow::Result<kube::Client> {
    let options = OPTIONS.get().cloned().unwrap_or_default();
    let why = if why.is_empty() { String::new() } else { format!(" {why}") };
    let config = match (&options.kubeconfig, &options.context) {
        (None, None) => kube::Config::infer().await.map_err(anyhow::Error::from),
        (kubeconfig, context) => {
            let select = KubeConfigOptions { context: context.clone(), ..Default::default() };
            match kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
                    kube::Config::from_custom_kubeconfig(file, &select).await.map_err(anyhow::Error::from)
                }
                None => kube::Config::from_kubeconfig(&select).await.map_err(anyhow::Error::from),
            }
        }
    };
    let config = config.with_context(|| {
        let context = options.context.as_deref().map(|c| format!(" (context {c})")).unwrap_or_default();
        format!("connecting to Kubernetes{context}{why}")
    })?;
    kube::Client::try_from(config).with_context(|| format!("building a Kubernetes client{why}"))
}
