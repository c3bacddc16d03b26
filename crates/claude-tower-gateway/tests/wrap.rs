//! `claude-tower-gateway wrap -- COMMAND` as a user meets it, against the
//! simulator. COMMAND is a small python3 program playing Claude Code: it
//! reads Claude Code's variables, sends one Messages request the way Claude
//! Code would (credential included), prints what it saw as JSON and exits
//! with `EXIT_WITH`.

#![cfg(all(unix, feature = "simulator"))]

use std::process::{Output, Stdio};
use std::time::Duration;

use claude_tower_sim::{Credential, Sim, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_claude-tower-gateway");

const FAKE_CLAUDE_CODE: &str = r#"
import json, os, urllib.request, urllib.error
e = os.environ
seen = {k: v for k, v in e.items() if k.startswith(("ANTHROPIC_", "CLAUDE_CODE_"))}
h = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
if e.get("CLAUDE_CODE_USE_FOUNDRY") == "1":
    url = e["ANTHROPIC_FOUNDRY_BASE_URL"]
    # As Claude Code 2.1.197: a key wins over CLAUDE_CODE_SKIP_FOUNDRY_AUTH.
    if "ANTHROPIC_FOUNDRY_API_KEY" in e:
        h["x-api-key"] = e["ANTHROPIC_FOUNDRY_API_KEY"]
    elif e.get("CLAUDE_CODE_SKIP_FOUNDRY_AUTH") == "1":
        pass
    elif "ANTHROPIC_FOUNDRY_AUTH_TOKEN" in e:
        h["authorization"] = "Bearer " + e["ANTHROPIC_FOUNDRY_AUTH_TOKEN"]
else:
    url = e["ANTHROPIC_BASE_URL"]
    if "ANTHROPIC_AUTH_TOKEN" in e:
        h["authorization"] = "Bearer " + e["ANTHROPIC_AUTH_TOKEN"]
    elif "ANTHROPIC_API_KEY" in e:
        h["x-api-key"] = e["ANTHROPIC_API_KEY"]
body = b'{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
req = urllib.request.Request(url + "/v1/messages?beta=true", data=body, headers=h, method="POST")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(req, timeout=30) as r:
        seen["status"], seen["answer"] = r.status, json.loads(r.read())
except urllib.error.HTTPError as err:
    seen["status"], seen["answer"] = err.code, json.loads(err.read() or b"null")
print(json.dumps(seen), flush=True)
raise SystemExit(int(e.get("EXIT_WITH", "0")))
"#;

/// Runs `wrap ARGS` with an environment of `vars` alone (plus what finds
/// python3).
async fn wrap(args: &[&str], vars: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(BIN)
        .arg("wrap")
        .args(args)
        .env_clear()
        .envs(inherited())
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("the binary runs")
}

/// What finds python3, and a temp directory for the gateway's log files.
fn inherited() -> impl Iterator<Item = (String, String)> {
    ["PATH", "HOME", "PYENV_ROOT"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .chain([("TMPDIR".to_owned(), env!("CARGO_TARGET_TMPDIR").to_owned())])
}

async fn fake_claude_code(vars: &[(&str, &str)]) -> (Output, Value) {
    let out = wrap(&["--", "python3", "-c", FAKE_CLAUDE_CODE], vars).await;
    let seen = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, seen)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn sim(config: SimConfig) -> Sim {
    Sim::start(config).await.expect("the simulator starts")
}

#[tokio::test]
async fn foundry_mode_with_a_key_goes_through_the_gateway_which_signs() {
    let sim = sim(SimConfig::default()
        .foundry_key("sim-foundry-key")
        .anthropic_key("sk-ant-held"))
    .await;
    let foundry = sim.foundry_base_url();
    let (out, seen) = fake_claude_code(&[
        ("CLAUDE_CODE_USE_FOUNDRY", "1"),
        ("ANTHROPIC_FOUNDRY_BASE_URL", &foundry),
        ("ANTHROPIC_FOUNDRY_API_KEY", "sim-foundry-key"),
        // Anthropic direct too: the failover, after Foundry.
        ("ANTHROPIC_BASE_URL", &sim.anthropic_base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-held"),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["answer"]["type"], "message", "{seen}");
    let url = seen["ANTHROPIC_FOUNDRY_BASE_URL"]
        .as_str()
        .unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/anthropic") && url != foundry,
        "{seen}"
    );
    assert_eq!(seen["CLAUDE_CODE_SKIP_FOUNDRY_AUTH"], "1");
    assert_eq!(seen["CLAUDE_CODE_USE_FOUNDRY"], "1");
    assert_eq!(
        seen["ANTHROPIC_FOUNDRY_API_KEY"], "claude-tower-wrap",
        "a placeholder"
    );
    assert!(seen.get("ANTHROPIC_BASE_URL").is_none(), "{seen}");
    assert!(seen.get("ANTHROPIC_API_KEY").is_none(), "{seen}");
    // The log went to a file, named once on stderr.
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("its log: ").count(), 1, "{stderr}");
    // The simulator saw the gateway's request, signed with the key.
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/anthropic/v1/messages");
    assert!(requests[0].accepted);
    assert_eq!(requests[0].credential, Credential::XApiKey);
}

#[tokio::test]
async fn foundry_mode_without_a_key_forwards_the_callers_token() {
    let sim = sim(SimConfig::default().foundry_token("callers-entra-token")).await;
    let foundry = sim.foundry_base_url();
    let vars = [
        ("CLAUDE_CODE_USE_FOUNDRY", "1"),
        ("ANTHROPIC_FOUNDRY_BASE_URL", foundry.as_str()),
        ("ANTHROPIC_FOUNDRY_AUTH_TOKEN", "callers-entra-token"),
    ];
    let (out, seen) = fake_claude_code(&vars).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(seen["status"], 200, "{seen}");
    assert!(
        seen.get("CLAUDE_CODE_SKIP_FOUNDRY_AUTH").is_none(),
        "{seen}"
    );
    assert_eq!(seen["ANTHROPIC_FOUNDRY_AUTH_TOKEN"], "callers-entra-token");
    assert!(text(&out.stderr).contains("foundry passthrough"));
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].credential, Credential::Bearer);
    assert!(requests[0].accepted);

    // A token the upstream rejects is the caller's answer, unchanged in kind.
    let mut wrong = vars;
    wrong[2].1 = "someone-elses-token";
    let (out, seen) = fake_claude_code(&wrong).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(seen["status"], 401, "{seen}");
    assert_eq!(seen["answer"]["error"]["type"], "authentication_error");
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn anthropic_mode_goes_through_the_gateway_with_a_placeholder() {
    let sim = sim(SimConfig::default().anthropic_key("sk-ant-held")).await;
    let (out, seen) = fake_claude_code(&[
        ("ANTHROPIC_BASE_URL", &sim.anthropic_base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-held"),
        ("EXIT_WITH", "7"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["ANTHROPIC_AUTH_TOKEN"], "claude-tower-wrap");
    assert!(seen.get("ANTHROPIC_API_KEY").is_none(), "{seen}");
    assert!(
        seen["ANTHROPIC_BASE_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:") && !u.ends_with("/anthropic")),
        "{seen}"
    );
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/v1/messages");
    assert!(
        requests[0].accepted,
        "the gateway's key, not the placeholder"
    );
}

#[tokio::test]
async fn missing_command_is_a_usage_error() {
    let out = wrap(&[], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<COMMAND>"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn an_unknown_command_exits_127_and_says_so() {
    let out = wrap(&["--simulator", "--", "no-such-command-xyz"], &[]).await;
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("no-such-command-xyz: command not found"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn nothing_upstream_is_refused_rather_than_faked() {
    let out = wrap(&["--", "python3", "-c", "pass"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no upstream is configured"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn death_by_signal_is_128_plus_the_signal() {
    let out = wrap(
        &[
            "--simulator",
            "--",
            "python3",
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(128 + 9), "{}", text(&out.stderr));
}

#[tokio::test]
async fn sigterm_goes_to_the_child() {
    let mut wrap = tokio::process::Command::new(BIN)
        .args(["wrap", "--simulator", "--", "python3", "-c"])
        .arg("import time; print('ready', flush=True); time.sleep(60)")
        .env_clear()
        .envs(inherited())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let stdout = wrap.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("the child starts");
    assert_eq!(line.trim(), "ready");
    let pid = wrap.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), wrap.wait())
        .await
        .expect("wrap ends with its child")
        .expect("status");
    assert_eq!(status.code(), Some(128 + 15));
}

#[tokio::test]
async fn help_explains_what_wrap_sets_and_removes() {
    let out = wrap(&["--help"], &[]).await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "ANTHROPIC_FOUNDRY_BASE_URL=http://127.0.0.1:PORT/anthropic",
        "ANTHROPIC_FOUNDRY_RESOURCE removed",
        "CLAUDE_CODE_SKIP_FOUNDRY_AUTH=1",
        "ANTHROPIC_BASE_URL=http://127.0.0.1:PORT",
        "--passthrough",
        "127: not found",
        "-- claude",
    ] {
        assert!(help.contains(needle), "{needle} missing from wrap --help");
    }
}
