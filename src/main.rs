use std::process::ExitCode;

use amplifier_sessions::auth::token::issue_dev_token;
use amplifier_sessions::db;
use amplifier_sessions::db::entra::EntraPassword;
use amplifier_sessions::lifecycle;
use amplifier_sessions::secrets::{Secrets, credential};
use amplifier_sessions::settings::DatabaseAuth;
use amplifier_sessions::settings::Settings;
use amplifier_sessions::startup::Application;
use amplifier_sessions::state::AppState;
use amplifier_sessions::telemetry;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    version,
    about = "Amplifier sessions API (Azure Functions custom handler)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// The role the service connects as (when it is not the one
        /// migrating): grant it what the service needs, now and on the
        /// objects later migrations create.
        #[arg(long, value_name = "ROLE")]
        grant_to: Option<String>,
    },
    /// Purge once what is past its retention (inactive sessions, the
    /// trash, users with no session left, old audit events), then exit;
    /// does nothing if another purge is running.
    Purge {
        /// Only count what would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a user token signed with the configured key (not in staging/production).
    DevToken {
        #[arg(long)]
        user: Uuid,
        /// Lifetime in minutes.
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("refusing to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::DevToken { .. }) {
        // It prints the token alone; nothing to trace.
        settings.telemetry.enabled = false;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let telemetry = telemetry::init(&settings, runtime.handle().clone());
    let result = match command {
        Command::Serve => runtime.block_on(serve(settings)),
        Command::Migrate { grant_to } => runtime.block_on(migrate(settings, grant_to)),
        Command::Purge { dry_run } => runtime.block_on(purge(settings, dry_run)),
        Command::DevToken { user, ttl_minutes } => dev_token(&settings, user, ttl_minutes),
    };
    // While the runtime still runs: the last exports are tasks on it.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let environment = settings.environment.as_str();
    let app = Application::bind(settings)
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = app.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, environment, "listening");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn migrate(settings: Settings, grant_to: Option<String>) -> Result<(), String> {
    let settings = std::sync::Arc::new(settings);
    let secrets = Secrets::new(settings.clone()).map_err(|e| e.to_string())?;
    let resolved = secrets.get().await.map_err(|e| e.to_string())?;
    let mut config = db::connect_config(&settings.database, &resolved.database);
    if settings.database.auth == DatabaseAuth::Entra {
        let entra = EntraPassword::new(
            credential(&settings.azure).map_err(|e| e.to_string())?,
            settings.fetch_timeout,
        );
        entra.ensure_fresh().await.map_err(|e| e.to_string())?;
        if let Some(token) = entra.password() {
            config.password(token.expose_secret());
        }
    }
    let tls = db::tls::connector().map_err(|e| e.to_string())?;
    db::migrate::run(&config, tls, grant_to.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("database schema is up to date");
    Ok(())
}

async fn purge(settings: Settings, dry_run: bool) -> Result<(), String> {
    let state = AppState::new(settings).map_err(|e| e.to_string())?;
    match lifecycle::run(&state.db, &state.settings, dry_run)
        .await
        .map_err(|e| format!("purge failed: {e}"))?
    {
        lifecycle::Outcome::Done(report) => {
            let c = &report.counts;
            let verb = if dry_run { "would purge" } else { "purged" };
            println!("{verb}:");
            println!(
                "  sessions inactive past their retention: {}",
                c.sessions_inactive
            );
            println!(
                "  sessions in the trash past TRASH_RETENTION_DAYS: {}",
                c.sessions_from_trash
            );
            println!("  users with no session left: {}", c.users);
            println!(
                "  audit events past AUDIT_RETENTION_DAYS: {}",
                c.audit_events
            );
            if !dry_run {
                println!("  messages and search documents: {}", c.transcript_rows);
            }
            println!(
                "{} batches of up to {} rows, the longest {} ms, busy {}% of the time \
                 (BACKGROUND_BUSY_PERCENT); {} ms in all",
                report.batches,
                report.batch_size,
                report.longest_batch_ms,
                report.busy_percent,
                report.elapsed_ms
            );
        }
        lifecycle::Outcome::Skipped => {
            println!("skipped: another purge holds the lock");
        }
    }
    Ok(())
}

fn dev_token(settings: &Settings, user: Uuid, ttl_minutes: u64) -> Result<(), String> {
    if settings.environment.is_deployed() {
        return Err("dev-token is refused in staging and production".to_owned());
    }
    println!(
        "{}",
        issue_dev_token(&settings.auth, user, ttl_minutes * 60)
    );
    Ok(())
}
