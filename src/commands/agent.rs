//! `tend agent`, and `tend status|suspend|resume` talking to a running agent.

use std::process::ExitCode;
use tend::agent::{self, AgentOptions, Mode, Origin, Reconciled, Shared};
use tend::config::LoadOptions;

use super::{Failure, who};
use crate::cli::{AgentArgs, AgentClientArgs, AgentMode, Cli};

fn origin(cli: &Cli) -> Result<Origin, Failure> {
    let Some(url) = &cli.source else { return Ok(Origin::Directory(cli.config.clone())) };
    #[cfg(feature = "git")]
    {
        let (source, subdir) = super::open_source(cli, url)?;
        Ok(Origin::Git { source, subdir })
    }
    #[cfg(not(feature = "git"))]
    {
        let _ = url;
        Err(Failure::user("this build of tend has no Git support", Some("build with the `git` feature".into())))
    }
}

pub async fn run(cli: &Cli, args: &AgentArgs) -> Result<ExitCode, Failure> {
    let secret = match &args.webhook_secret_file {
        Some(f) => Some(fs_err::read_to_string(f).map_err(|e| Failure::from_error(&e, None))?.trim().to_string()),
        None => args.webhook_secret.clone().filter(|s| !s.is_empty()),
    };
    let origin = origin(cli)?;
    #[cfg(feature = "git")]
    let source = match &origin {
        tend::agent::Origin::Git { source, subdir } => Some(super::git_origin(source, subdir)),
        tend::agent::Origin::Directory(_) => None,
    };
    #[cfg(not(feature = "git"))]
    let source = None;
    let opts = AgentOptions {
        origin,
        load: LoadOptions {
            root: cli.config.clone(),
            environment: cli.environment.clone(),
            vars: cli.vars.clone(),
            identities: tend::secrets::IdentitySources::from_env(&cli.identities),
            allow_destroy_all: cli.allow_destroy_all,
            origin: source,
            reassign_state: cli.reassign_state,
        },
        state: cli.state.clone(),
        interval: args.interval,
        jitter: args.jitter,
        drift_interval: args.drift_interval,
        max_backoff: args.max_backoff,
        mode: args.mode.map(|m| if m == AgentMode::Apply { Mode::Apply } else { Mode::PlanOnly }),
        once: args.once,
        parallelism: args.parallelism,
        webhook_secret: secret,
        who: format!("agent:{}", who()),
        #[cfg(feature = "git")]
        signers: tend::source::signers(cli.allowed_signers.as_deref()).map_err(|e| Failure::user(e, None))?,
    };
    let shared = Shared::new(&opts);
    let server = if args.once || args.listen == "none" {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::from_error(&e, Some(format!("choose another address with --listen (now {})", args.listen))))?;
        let addr = listener.local_addr().map_err(|e| Failure::from_error(&e, None))?;
        eprintln!("tend agent: listening on http://{addr} (webhooks /hooks/github|gitlab|gitea|generic, /healthz, /readyz, /metrics, /status)");
        tracing::info!(%addr, "listening");
        let app = agent::http::router(shared.clone());
        Some(tokio::spawn(async move {
            agent::listen::serve(listener, app, agent::listen::Limits::default()).await;
        }))
    };
    let signals = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                () = term => {},
            }
            eprintln!("tend agent: stopping: finishing the changes in progress, starting no new ones");
            shared.shutdown();
        })
    };
    let last = agent::run(opts, shared.clone()).await;
    signals.abort();
    if let Some(s) = server {
        s.abort();
    }
    match last {
        // A stopped agent exits 0; `--once` reports how its one reconcile went.
        Reconciled::Failed(msg) | Reconciled::Refused(msg) if args.once => Err(Failure { text: format!("error: {msg}\n") }),
        Reconciled::Success if args.once => {
            // Plan-only: what it would change, and (asked) exit 2 when that is anything.
            let st = shared.status.lock().await;
            if st.mode == "plan-only" {
                print!("{}", st.plan_text.as_deref().unwrap_or_default());
                if args.detailed_exitcode && st.plan_has_changes {
                    return Ok(ExitCode::from(2));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Reconciled::Success | Reconciled::Failed(_) | Reconciled::Refused(_) => Ok(ExitCode::SUCCESS),
    }
}

async fn call(args: &AgentClientArgs, method: reqwest::Method, path: &str) -> Result<String, Failure> {
    let url = format!("{}{path}", args.agent.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(s) = &args.secret {
        req = req.bearer_auth(s);
    }
    let resp =
        req.send().await.map_err(|e| Failure::from_error(&e, Some(format!("is `tend agent` running and listening on {}? (--agent URL)", args.agent))))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| Failure::from_error(&e, None))?;
    if !status.is_success() {
        return Err(Failure::user(format!("the agent answered {status}: {}", body.trim()), None));
    }
    Ok(body)
}

pub async fn status(args: &AgentClientArgs) -> Result<ExitCode, Failure> {
    if args.plan {
        print!("{}", call(args, reqwest::Method::GET, "/plan").await?);
        return Ok(ExitCode::SUCCESS);
    }
    let body = call(args, reqwest::Method::GET, "/status").await?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let st: serde_json::Value = serde_json::from_str(&body).map_err(|e| Failure::from_error(&e, None))?;
    print!("{}", render_status(&st));
    let healthy = st["last_result"].as_str() == Some("success");
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The status for a person.
pub fn render_status(st: &serde_json::Value) -> String {
    let s = |k: &str| st[k].as_str().unwrap_or("-").to_string();
    let short = |k: &str| st[k].as_str().map_or_else(|| "-".to_string(), |c| c.chars().take(12).collect());
    let mut out = String::new();
    out.push_str(&format!("Source:        {} ({})\n", s("source"), s("reference")));
    out.push_str(&format!("Mode:          {}{}\n", s("mode"), if st["suspended"].as_bool() == Some(true) { " — SUSPENDED" } else { "" }));
    out.push_str(&format!(
        "Commit:        fetched {}, applied {}, last attempted {}\n",
        short("source_commit"),
        short("last_applied_commit"),
        short("last_attempted_commit")
    ));
    out.push_str(&format!("Last result:   {} at {} (last success {})\n", s("last_result"), s("last_attempt_at"), s("last_success_at")));
    if let Some(e) = st["last_error"]["message"].as_str() {
        out.push_str(&format!("Last error:    {e} ({})\n", st["last_error"]["kind"].as_str().unwrap_or("terminal")));
    }
    let mut counts = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    if let Some(rs) = st["resources"].as_object() {
        for (addr, r) in rs {
            let status = r["status"].as_str().unwrap_or("?");
            *counts.entry(status.to_string()).or_insert(0usize) += 1;
            if status != "ok" {
                let action = r["action"].as_str().map(|a| format!(" (would {a})")).unwrap_or_default();
                problems.push(format!(
                    "  {status:<9} {addr}{action}{}\n",
                    r["last_error"]["message"].as_str().map(|e| format!(": {}", e.lines().next().unwrap_or_default())).unwrap_or_default()
                ));
            }
        }
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out.push_str(&format!("Resources:     {}\n", if summary.is_empty() { "none".into() } else { summary.join(", ") }));
    for p in problems {
        out.push_str(&p);
    }
    out
}

pub async fn suspend(args: &AgentClientArgs, on: bool) -> Result<ExitCode, Failure> {
    let body = call(args, reqwest::Method::POST, if on { "/suspend" } else { "/resume" }).await?;
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}
