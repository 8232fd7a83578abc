//! One connection to wherever Redis runs: a single server (reconnecting by
//! itself), a Redis Cluster (MOVED and ASK followed by the client), or the master
//! the Sentinels name (asked again after any failure, which is how a failover is
//! followed). Every connection is multiplexed, so pipelines sent together share
//! the wire: one round trip per node, not one per pipeline.

use crate::config::RedisTarget;
use futures::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Pipeline, RedisResult, Value};
use std::time::Duration;

/// Pipelines in flight at once; each is one slot's work in a cluster.
const IN_FLIGHT: usize = 256;

#[derive(Clone)]
pub enum Backend {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl Backend {
    pub async fn connect(target: &mut RedisTarget, timeout: Duration) -> RedisResult<Backend> {
        // rustls needs a process-wide crypto provider for rediss:// (a second call is a no-op error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        match target {
            RedisTarget::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(5));
                Ok(Backend::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            RedisTarget::Cluster(client) => Ok(Backend::Cluster(client.get_async_connection().await?)),
            RedisTarget::Sentinel(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                Ok(Backend::Sentinel(
                    client.get_async_connection_with_config(&config).await?,
                ))
            }
        }
    }

    /// Runs the pipelines (in a cluster each must keep to one slot) and returns
    /// each one's replies, in order: in a cluster some may fail while others ran.
    pub async fn run(&self, pipelines: Vec<Pipeline>) -> Vec<RedisResult<Vec<Value>>> {
        match self {
            Backend::Single(c) => run_on(c, pipelines).await,
            Backend::Cluster(c) => run_on(c, pipelines).await,
            Backend::Sentinel(c) => run_on(c, pipelines).await,
        }
    }

    /// `SCRIPT LOAD` as a command of its own, which a cluster client sends to every node.
    pub async fn load_script(&self, source: &str) -> RedisResult<()> {
        let load = redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned();
        match self {
            Backend::Single(c) => load.query_async::<Value>(&mut c.clone()).await,
            Backend::Cluster(c) => load.query_async::<Value>(&mut c.clone()).await,
            Backend::Sentinel(c) => load.query_async::<Value>(&mut c.clone()).await,
        }
        .map(drop)
    }
}

async fn run_on<C>(conn: &C, pipelines: Vec<Pipeline>) -> Vec<RedisResult<Vec<Value>>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    futures::stream::iter(pipelines)
        .map(|pipe| {
            let mut conn = conn.clone();
            async move {
                // Nothing to send (no override pending, say): nothing to wait for.
                if pipe.cmd_iter().next().is_none() {
                    return Ok(Vec::new());
                }
                pipe.query_async::<Vec<Value>>(&mut conn).await
            }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await
}
