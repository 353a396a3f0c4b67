//! The Redis connection the queue talks through: one multiplexed, self-reconnecting
//! connection to a single server, or a cluster connection (all keys of a namespace share
//! one hash tag, so every script and pipeline lands on one shard). TLS with a private CA.

use crate::config::RedisSettings;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, TlsCertificates, Value};
use secrecy::ExposeSecret;
use std::time::Duration;

/// A connection to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn certificates(redis: &RedisSettings) -> Result<Option<TlsCertificates>, RedisError> {
    let Some(path) = &redis.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        RedisError::from((
            redis::ErrorKind::Io,
            "cannot read redis.tls_ca_file",
            format!("{}: {e}", path.display()),
        ))
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// Opens the connection once (the caller retries). `retries` bounds the connection
/// manager's own reconnect attempts per call.
pub async fn open(redis: &RedisSettings, retries: usize) -> Result<Conn, RedisError> {
    let url = redis.url.expose_secret();
    let certs = certificates(redis)?;
    if redis.cluster {
        let mut b = ClusterClientBuilder::new(vec![url.to_string()])
            .connection_timeout(redis.connect_timeout)
            .response_timeout(redis.response_timeout)
            .retries(retries as u32);
        if let Some(c) = certs {
            b = b.certs(c);
        }
        let client = b.build()?;
        return Ok(Conn::Cluster(client.get_async_connection().await?));
    }
    let client = match certs {
        Some(c) => redis::Client::build_with_tls(url, c)?,
        None => redis::Client::open(url)?,
    };
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(redis.connect_timeout))
        .set_response_timeout(Some(redis.response_timeout))
        .set_number_of_retries(retries)
        .set_max_delay(Duration::from_secs(2));
    Ok(Conn::Single(
        ConnectionManager::new_with_config(client, cfg).await?,
    ))
}
