//! The binary as an operator meets it: `--help`, `check`, and refusing to
//! start. Each run gets an empty environment plus what the test sets.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_claude-tower-gateway");

fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_explains_every_setting_with_its_variable_and_default() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for variable in [
        "CLAUDE_TOWER_LISTEN",
        "CLAUDE_TOWER_CLIENT_KEYS",
        "CLAUDE_TOWER_CONFIG",
        "CLAUDE_TOWER_HEADER_READ_TIMEOUT",
        "CLAUDE_TOWER_IDLE_TIMEOUT",
        "CLAUDE_TOWER_MAX_CONNECTIONS",
        "CLAUDE_TOWER_TLS_CERT",
        "CLAUDE_TOWER_SIMULATOR",
        "ANTHROPIC_FOUNDRY_API_KEY",
        "CLAUDE_TOWER_ENTRA_TENANT_ID",
        "CLAUDE_TOWER_OIDC_ISSUER",
        "CLAUDE_TOWER_ADMIN_CALLERS",
        "CLAUDE_TOWER_METRICS_PUBLIC",
        "CLAUDE_TOWER_REDIS_URL",
        "CLAUDE_TOWER_TPM",
        "CLAUDE_TOWER_TOKEN_QUOTA",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    for default in ["127.0.0.1:8787", "600s", "30s", "90s", "4096"] {
        assert!(
            help.contains(default),
            "default {default} missing from --help"
        );
    }
}

#[test]
fn help_never_shows_a_client_key() {
    let out = run(
        &["--help"],
        &[
            ("CLAUDE_TOWER_CLIENT_KEYS", "team-secret-key"),
            ("CLAUDE_TOWER_REDIS_URL", "redis://:redis-secret@h:6379"),
        ],
    );
    assert!(!text(&out.stdout).contains("team-secret-key"));
    assert!(!text(&out.stdout).contains("redis-secret"));
}

#[test]
fn check_prints_the_configuration_with_secrets_redacted() {
    let out = run(
        &["check", "--deadline", "90s"],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-very-secret"),
            ("ANTHROPIC_FOUNDRY_RESOURCE", "my-resource"),
            ("ANTHROPIC_FOUNDRY_API_KEY", "foundry-very-secret"),
            ("CLAUDE_TOWER_CLIENT_KEYS", "client-very-secret,second"),
            ("CLAUDE_TOWER_DEADLINE", "10s"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("very-secret"), "{stdout}");
    assert!(stdout.contains("mode = \"upstream\""), "{stdout}");
    assert!(
        stdout.contains("deadline = \"90s\""),
        "the flag wins: {stdout}"
    );
    assert!(
        stdout.contains("[identity.client_keys]\nkey-1 = \"<redacted>\"\nkey-2 = \"<redacted>\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://my-resource.services.ai.azure.com/anthropic"),
        "{stdout}"
    );
    assert!(stdout.contains("foundry-api-key"), "{stdout}");
}

#[test]
fn check_prints_identity_and_quota_and_refuses_bad_limits() {
    let out = run(
        &["check"],
        &[
            ("CLAUDE_TOWER_CLIENT_KEYS", "ada=k-ada-secret"),
            ("CLAUDE_TOWER_TPM", "100000"),
            ("CLAUDE_TOWER_TOKEN_QUOTA", "5000000/month"),
            (
                "CLAUDE_TOWER_REDIS_URL",
                "redis://:redis-secret@127.0.0.1:6379",
            ),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        !stdout.contains("k-ada-secret") && !stdout.contains("redis-secret"),
        "{stdout}"
    );
    for needle in [
        "[identity.client_keys]\nada = \"<redacted>\"",
        "store = \"redis\"",
        "redis_url = \"<redacted>\"",
        "tokens_per_minute = 100000",
        "token_quota = \"5000000/month\"",
        "[metrics]",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in\n{stdout}");
    }
    let out = run(&["check"], &[("CLAUDE_TOWER_RPM", "zero")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("CLAUDE_TOWER_RPM"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_reads_routes_from_a_config_file() {
    let dir = std::env::temp_dir().join(format!("ctg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        r#"
models = ["claude-sonnet-4-5"]

[server]
deadline = "120s"

[[routes]]
name = "east"
face = "foundry"
resource = "east-res"
api_key_env = "EAST_KEY"
model_map = { "claude-sonnet-4-5-20250929" = "sonnet-east" }

[[routes]]
name = "west"
face = "foundry"
base_url = "https://west.example/anthropic"
api_key = "inline-very-secret"
"#,
    )
    .unwrap();
    let path = file.display().to_string();
    let out = run(
        &["check", "--config", &path],
        &[("EAST_KEY", "east-very-secret")],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("very-secret"), "{stdout}");
    for expected in [
        "name = \"east\"",
        "https://east-res.services.ai.azure.com/anthropic",
        "name = \"west\"",
        "https://west.example/anthropic",
        "deadline = \"120s\"",
        "claude-sonnet-4-5-20250929 = \"sonnet-east\"",
    ] {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }

    // A stray Claude Code variable beside file routes is refused, named.
    let out = run(
        &["check", "--config", &path],
        &[("EAST_KEY", "k"), ("ANTHROPIC_API_KEY", "k")],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ANTHROPIC_API_KEY"));

    // A typo in the file is an error naming the key.
    std::fs::write(&file, "[server]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = run(&["check", "--config", &path], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("lisen"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_and_start_fail_naming_the_missing_variable() {
    for (vars, named) in [
        (
            &[("ANTHROPIC_BASE_URL", "https://api.example")][..],
            "ANTHROPIC_API_KEY",
        ),
        (&[("ANTHROPIC_AUTH_TOKEN", "tok")], "ANTHROPIC_AUTH_TOKEN"),
        (
            &[("CLAUDE_CODE_USE_FOUNDRY", "1")],
            "ANTHROPIC_FOUNDRY_RESOURCE",
        ),
        (
            &[("ANTHROPIC_FOUNDRY_API_KEY", "fk-very-secret")],
            "ANTHROPIC_FOUNDRY_RESOURCE",
        ),
    ] {
        for args in [&["check"][..], &["--listen", "127.0.0.1:0"]] {
            let out = run(args, vars);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {vars:?}: {stderr}");
            assert!(stderr.contains(named), "{args:?} {vars:?}: {stderr}");
            assert!(!stderr.contains("very-secret"), "{stderr}");
            assert!(
                !text(&out.stdout).contains("SIMULATOR"),
                "never the simulator"
            );
        }
    }
}

#[cfg(feature = "simulator")]
#[test]
fn check_says_simulator_mode_loudly() {
    let out = run(&["check"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("SIMULATOR MODE"), "{stdout}");
    assert!(stdout.contains("mode = \"simulator\""), "{stdout}");
}

/// With the `jemalloc` feature (default) the binary allocates with jemalloc:
/// jemalloc reads its configuration variable (prefixed `_RJEM_`, as
/// tikv-jemallocator builds it) and prints its statistics at exit. The
/// system allocator would ignore the variable.
#[cfg(all(feature = "jemalloc", unix))]
#[test]
fn the_binary_allocates_with_jemalloc() {
    let out = run(&["--help"], &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("jemalloc statistics"), "{stderr}");
}
