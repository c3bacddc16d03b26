//! `EnvCredentialChain`: first answering step wins and sticks; when every
//! step fails, every reason is reported together.

#![cfg(feature = "entra")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use claude_tower_auth::EnvCredentialChain;
use common::{FakeCredential, Mode};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn the_first_step_that_answers_is_used_from_then_on() {
    let failing = FakeCredential::new(Mode::Fail, HOUR);
    let working = FakeCredential::new(Mode::Fixed("chain-token"), HOUR);
    let chain = EnvCredentialChain::new()
        .with_unavailable("ClientSecretCredential", "not configured")
        .with_credential("ManagedIdentityCredential", failing.clone())
        .with_credential("AzureCliCredential", working.clone());

    let token = chain.get_token(&["scope"], None).await.expect("token");
    assert_eq!(token.token.secret(), "chain-token");
    chain.get_token(&["scope"], None).await.expect("token");
    assert_eq!(failing.calls(), 1, "a settled chain skips the failed steps");
    assert_eq!(working.calls(), 2);
}

#[tokio::test]
async fn every_failure_reason_is_reported_together() {
    let chain = EnvCredentialChain::new()
        .with_unavailable("ClientSecretCredential", "AZURE_CLIENT_SECRET not set")
        .with_credential(
            "ManagedIdentityCredential",
            FakeCredential::new(Mode::Fail, HOUR),
        )
        .with_credential("AzureCliCredential", FakeCredential::new(Mode::Fail, HOUR));

    let err = chain
        .get_token(&["scope"], None)
        .await
        .expect_err("all fail");
    let message = err.to_string();
    for part in [
        "ClientSecretCredential: AZURE_CLIENT_SECRET not set",
        "ManagedIdentityCredential: identity provider unreachable",
        "AzureCliCredential: identity provider unreachable",
    ] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
}

#[test]
fn from_env_says_which_variables_are_missing() {
    let chain = EnvCredentialChain::from_env_with(|name| match name {
        "AZURE_TENANT_ID" => Some("00000000-0000-0000-0000-000000000000".to_owned()),
        _ => None,
    });
    let steps: Vec<_> = chain.steps().collect();
    let names: Vec<_> = steps.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "ClientSecretCredential",
            "WorkloadIdentityCredential",
            "ManagedIdentityCredential",
            "AzureCliCredential",
            "AzureDeveloperCliCredential",
        ]
    );
    assert_eq!(
        steps[0].1,
        Some("not configured: AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set")
    );
    assert_eq!(
        steps[1].1,
        Some("not configured: AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE not set")
    );
}

#[test]
fn from_env_builds_the_client_secret_step_without_echoing_the_secret() {
    let chain = EnvCredentialChain::from_env_with(|name| match name {
        "AZURE_TENANT_ID" => Some("00000000-0000-0000-0000-000000000000".to_owned()),
        "AZURE_CLIENT_ID" => Some("11111111-1111-1111-1111-111111111111".to_owned()),
        "AZURE_CLIENT_SECRET" => Some("SECRET-client-secret".to_owned()),
        _ => None,
    });
    let first = chain.steps().next().expect("a step");
    assert_eq!(first, ("ClientSecretCredential", None));
    assert!(!format!("{chain:?}").contains("SECRET-client-secret"));
    let _: Arc<dyn TokenCredential> = Arc::new(chain);
}

#[tokio::test]
async fn an_empty_chain_says_so() {
    let err = EnvCredentialChain::new()
        .get_token(&["scope"], None)
        .await
        .expect_err("empty");
    assert!(err.to_string().contains("no steps"), "{err}");
}
