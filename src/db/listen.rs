//! A connection that LISTENs (or holds the purge's advisory lock):
//! session-level state, so never from the pool
//! (which may go through PgBouncer in transaction mode, where LISTEN does
//! not work); the same database, login and TLS, optionally at another host
//! or port (`DATABASE_LISTEN_HOST`, `DATABASE_LISTEN_PORT`).

use futures_util::future::poll_fn;
use tokio::sync::mpsc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Socket};

use super::{Database, DbError};

/// A listening connection: `client` runs statements on it (keep it to keep
/// the connection); `notifications` yields the payloads of the channel's
/// notifications and ends when the connection does.
pub struct Listening {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<String>,
}

/// Connects and LISTENs on `channel` (an identifier of ours, not input).
/// When this returns, every notification committed from now on arrives.
pub async fn listen(
    db: &Database,
    host: Option<&str>,
    port: Option<u16>,
    channel: &str,
) -> Result<Listening, DbError> {
    let listening = direct(db, host, port).await?;
    listening
        .client
        .batch_execute(&format!("LISTEN {channel}"))
        .await?;
    Ok(listening)
}

/// A connection of its own, outside the pool, for session-level state
/// (LISTEN, the purge's advisory lock), at `host`/`port` when given.
pub async fn direct(
    db: &Database,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<Listening, DbError> {
    let config = retarget(&db.direct_config().await?, host, port);
    if config.get_ssl_mode() == SslMode::Disable {
        connect(&config, NoTls).await
    } else {
        connect(&config, super::tls::connector_async().await?).await
    }
}

async fn connect<T>(config: &Config, tls: T) -> Result<Listening, DbError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (sender, notifications) = mpsc::unbounded_channel();
    // Polls the connection (which also carries the client's statements)
    // until it ends; dropping `sender` then tells the receiver.
    tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if sender.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the listening connection failed");
                    return;
                }
            }
        }
    });
    Ok(Listening {
        client,
        notifications,
    })
}

/// `config` with its host and port replaced where given (a `Config` can
/// only add hosts and ports, so the rest is copied into a new one).
pub fn retarget(config: &Config, host: Option<&str>, port: Option<u16>) -> Config {
    if host.is_none() && port.is_none() {
        return config.clone();
    }
    let mut to = Config::new();
    if let Some(user) = config.get_user() {
        to.user(user);
    }
    if let Some(password) = config.get_password() {
        to.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        to.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        to.options(options);
    }
    if let Some(name) = config.get_application_name() {
        to.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        to.connect_timeout(*timeout);
    }
    to.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .channel_binding(config.get_channel_binding())
        .target_session_attrs(config.get_target_session_attrs());
    match host {
        Some(host) => {
            to.host(host);
        }
        None => {
            for host in config.get_hosts() {
                match host {
                    Host::Tcp(name) => to.host(name),
                    #[cfg(unix)]
                    Host::Unix(path) => to.host_path(path),
                };
            }
            for address in config.get_hostaddrs() {
                to.hostaddr(*address);
            }
        }
    }
    match port {
        Some(port) => {
            to.port(port);
        }
        None => {
            for port in config.get_ports() {
                to.port(*port);
            }
        }
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_connection_keeps_the_login_and_changes_only_host_or_port() {
        let pool: Config =
            "postgresql://u:secret@pgbouncer.example:6432/app?sslmode=require&application_name=amp"
                .parse()
                .unwrap();
        let direct = retarget(&pool, None, Some(5432));
        assert_eq!(direct.get_ports(), &[5432]);
        assert_eq!(direct.get_hosts(), pool.get_hosts());
        assert_eq!(direct.get_user(), Some("u"));
        assert_eq!(direct.get_password(), Some(&b"secret"[..]));
        assert_eq!(direct.get_dbname(), Some("app"));
        assert_eq!(direct.get_ssl_mode(), SslMode::Require);
        assert_eq!(direct.get_application_name(), Some("amp"));
        let moved = retarget(&pool, Some("db.internal"), None);
        assert_eq!(moved.get_hosts(), &[Host::Tcp("db.internal".to_owned())]);
        assert_eq!(moved.get_ports(), &[6432]);
        assert_eq!(retarget(&pool, None, None).get_ports(), &[6432]);
    }
}
