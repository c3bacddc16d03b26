//! [`EnvCredentialChain`]: DefaultAzureCredential's job, which azure_identity
//! 1.x no longer does.
//!
//! Steps, in order: client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`
//! with tenant and client id), managed identity (user-assigned when
//! `AZURE_CLIENT_ID` is set), then the developer tools: Azure CLI and Azure
//! Developer CLI. A step whose settings are missing is kept as *unavailable*
//! with the reason; `get_token` tries the available steps in order and the
//! first that answers is used from then on. If every step fails, one error
//! lists every step's reason.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use azure_core::credentials::{
    AccessToken, Secret as AzureSecret, TokenCredential, TokenRequestOptions,
};
use azure_core::error::ErrorKind;
use azure_identity::{
    AzureCliCredential, AzureDeveloperCliCredential, ClientSecretCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

/// No step has answered yet.
const NONE_CHOSEN: usize = usize::MAX;

/// A chain of Entra ID credentials tried in order, in the spirit of
/// DefaultAzureCredential (which azure_identity 1.x no longer ships).
///
/// [`from_env`](Self::from_env) builds, in order: client secret
/// (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), workload
/// identity (`AZURE_FEDERATED_TOKEN_FILE` with tenant and client id), managed
/// identity (user-assigned when `AZURE_CLIENT_ID` is set), Azure CLI, Azure
/// Developer CLI. A step whose settings are missing is kept as unavailable
/// with the reason. `get_token` tries the available steps in order and the
/// first that answers is used from then on; if every step fails, one
/// `ErrorKind::Credential` error lists every step's reason.
///
/// ```
/// use claude_tower_auth::EnvCredentialChain;
///
/// // Reads nothing from the process: the lookup closure is the environment.
/// let chain = EnvCredentialChain::from_env_with(|_| None);
/// let steps: Vec<_> = chain.steps().map(|(name, _)| name).collect();
/// assert_eq!(steps[0], "ClientSecretCredential");
/// ```
pub struct EnvCredentialChain {
    steps: Vec<Step>,
    chosen: AtomicUsize,
}

struct Step {
    name: Arc<str>,
    state: StepState,
}

enum StepState {
    Ready(Arc<dyn TokenCredential>),
    Unavailable(String),
}

impl Default for EnvCredentialChain {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvCredentialChain {
    /// An empty chain; add steps with [`with_credential`](Self::with_credential).
    pub fn new() -> Self {
        Self {
            steps: Vec::new(),
            chosen: AtomicUsize::new(NONE_CHOSEN),
        }
    }

    /// Appends a step.
    pub fn with_credential(mut self, name: &str, credential: Arc<dyn TokenCredential>) -> Self {
        self.steps.push(Step {
            name: name.into(),
            state: StepState::Ready(credential),
        });
        self
    }

    /// Appends a step that could not be built, with the reason (reported
    /// if every step fails).
    pub fn with_unavailable(mut self, name: &str, reason: impl Into<String>) -> Self {
        self.steps.push(Step {
            name: name.into(),
            state: StepState::Unavailable(reason.into()),
        });
        self
    }

    /// The chain from the process environment.
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// The chain from `lookup` (`name -> value`); empty values count as unset.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let tenant = var("AZURE_TENANT_ID");
        let client = var("AZURE_CLIENT_ID");
        let mut chain = Self::new();

        const SECRET: &str = "ClientSecretCredential";
        chain = match (&tenant, &client, var("AZURE_CLIENT_SECRET")) {
            (Some(tenant), Some(client), Some(secret)) => chain.step(
                SECRET,
                ClientSecretCredential::new(tenant, client.clone(), AzureSecret::new(secret), None),
            ),
            _ => chain.with_unavailable(
                SECRET,
                missing(&[
                    ("AZURE_TENANT_ID", tenant.is_some()),
                    ("AZURE_CLIENT_ID", client.is_some()),
                    ("AZURE_CLIENT_SECRET", var("AZURE_CLIENT_SECRET").is_some()),
                ]),
            ),
        };

        const WORKLOAD: &str = "WorkloadIdentityCredential";
        chain = match (&tenant, &client, var("AZURE_FEDERATED_TOKEN_FILE")) {
            (Some(tenant), Some(client), Some(file)) => chain.step(
                WORKLOAD,
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    tenant_id: Some(tenant.clone()),
                    client_id: Some(client.clone()),
                    token_file_path: Some(file.into()),
                    ..Default::default()
                })),
            ),
            _ => chain.with_unavailable(
                WORKLOAD,
                missing(&[
                    ("AZURE_TENANT_ID", tenant.is_some()),
                    ("AZURE_CLIENT_ID", client.is_some()),
                    (
                        "AZURE_FEDERATED_TOKEN_FILE",
                        var("AZURE_FEDERATED_TOKEN_FILE").is_some(),
                    ),
                ]),
            ),
        };

        let managed = ManagedIdentityCredentialOptions {
            user_assigned_id: client.clone().map(UserAssignedId::ClientId),
            ..Default::default()
        };
        chain = chain.step(
            "ManagedIdentityCredential",
            ManagedIdentityCredential::new(Some(managed)),
        );
        chain = chain.step("AzureCliCredential", AzureCliCredential::new(None));
        chain.step(
            "AzureDeveloperCliCredential",
            AzureDeveloperCliCredential::new(None),
        )
    }

    fn step<T: TokenCredential + 'static>(
        self,
        name: &str,
        built: azure_core::Result<Arc<T>>,
    ) -> Self {
        match built {
            Ok(credential) => self.with_credential(name, credential),
            Err(err) => self.with_unavailable(name, err.to_string()),
        }
    }

    /// Each step's name, and why it is unavailable if it is.
    pub fn steps(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.steps.iter().map(|step| {
            let reason = match &step.state {
                StepState::Ready(_) => None,
                StepState::Unavailable(reason) => Some(reason.as_str()),
            };
            (&*step.name, reason)
        })
    }
}

fn missing(vars: &[(&str, bool)]) -> String {
    let names: Vec<&str> = vars
        .iter()
        .filter(|(_, set)| !set)
        .map(|(name, _)| *name)
        .collect();
    format!("not configured: {} not set", names.join(", "))
}

#[async_trait::async_trait]
impl TokenCredential for EnvCredentialChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.load(Ordering::Acquire);
        if let Some(Step {
            state: StepState::Ready(credential),
            ..
        }) = self.steps.get(chosen)
        {
            return credential.get_token(scopes, options).await;
        }
        let mut reasons = Vec::with_capacity(self.steps.len());
        for (index, step) in self.steps.iter().enumerate() {
            match &step.state {
                StepState::Unavailable(reason) => reasons.push(format!("{}: {reason}", step.name)),
                StepState::Ready(credential) => {
                    match credential.get_token(scopes, options.clone()).await {
                        Ok(token) => {
                            self.chosen.store(index, Ordering::Release);
                            tracing::debug!(credential = %step.name, "credential chain settled");
                            return Ok(token);
                        }
                        Err(err) => reasons.push(format!("{}: {err}", step.name)),
                    }
                }
            }
        }
        if reasons.is_empty() {
            reasons.push("the chain has no steps".to_owned());
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no credential in the chain could get a token: {}",
                reasons.join("; ")
            ),
        ))
    }
}

impl fmt::Debug for EnvCredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, unavailable) in self.steps() {
            match unavailable {
                None => list.entry(&name),
                Some(reason) => list.entry(&format_args!("{name} (unavailable: {reason})")),
            };
        }
        list.finish()
    }
}
