//! The fleet: agent tokens the operator issued (kept hashed) and the nodes
//! remote agents registered, with their devices and liveness.

use crate::rows::{agent_row, node_row};
use crate::sql::query;
use crate::*;

#[async_trait::async_trait]
pub trait FleetStore {
    async fn create_agent(&self, name: &str, token_hash: &str) -> Result<AgentTokenRow>;
    /// The agent a token belongs to, unless it was revoked.
    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentTokenRow>>;
    /// A page of agent tokens, by id (ids grow as tokens are issued): at
    /// most `limit`, after the token `after_id`.
    async fn list_agents(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<AgentTokenRow>>;
    /// Revoke an agent's token. Returns false if there is no such agent.
    async fn revoke_agent(&self, name: &str) -> Result<bool>;
    /// Register a node or record its heartbeat: it is up, seen now, held
    /// by `agent_id`, with these devices.
    async fn node_seen(&self, name: &str, agent_id: i64, devices: &[FleetDevice]) -> Result<()>;
    async fn get_node(&self, name: &str) -> Result<Option<NodeRow>>;
    async fn list_nodes(&self) -> Result<Vec<NodeRow>>;
    /// Declare dead the nodes that are up but were last seen before
    /// `silent_since`. Returns their names.
    async fn mark_dead_nodes(&self, silent_since: DateTime<Utc>) -> Result<Vec<String>>;
}

const AGENT_COLS: &str = "SELECT id, name, created_at, revoked FROM agent_tokens";
const NODE_COLS: &str =
    "SELECT name, agent_id, devices, state, registered_at, last_seen FROM nodes";

#[async_trait::async_trait]
impl FleetStore for SqlStore {
    async fn create_agent(&self, name: &str, token_hash: &str) -> Result<AgentTokenRow> {
        let row = query(
            "INSERT INTO agent_tokens (name, token_hash, created_at) \
             VALUES (?, ?, ?) RETURNING id, name, created_at, revoked",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now_ms())
        .fetch_one(self.db.write())
        .await
        .map_err(|e| e.conflict_as(|| format!("agent '{name}'")))?;
        agent_row(&row)
    }

    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentTokenRow>> {
        let row = query(format!(
            "{AGENT_COLS} WHERE token_hash = ? AND revoked = FALSE"
        ))
        .bind(token_hash)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn list_agents(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<AgentTokenRow>> {
        let rows = query(format!("{AGENT_COLS} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after_id.unwrap_or(i64::MIN))
            .bind(i64::from(limit))
            .fetch_all(self.db.read())
            .await?;
        rows.iter().map(agent_row).collect()
    }

    async fn revoke_agent(&self, name: &str) -> Result<bool> {
        let n = query("UPDATE agent_tokens SET revoked = TRUE WHERE name = ?")
            .bind(name)
            .execute(self.db.write())
            .await?;
        Ok(n > 0)
    }

    async fn node_seen(&self, name: &str, agent_id: i64, devices: &[FleetDevice]) -> Result<()> {
        let now = now_ms();
        query(
            "INSERT INTO nodes (name, agent_id, devices, state, registered_at, last_seen) \
             VALUES (?, ?, ?, 'up', ?, ?) \
             ON CONFLICT (name) DO UPDATE SET agent_id = excluded.agent_id, \
             devices = excluded.devices, state = 'up', last_seen = excluded.last_seen",
        )
        .bind(name)
        .bind(agent_id)
        .bind(to_json(&devices))
        .bind(now)
        .bind(now)
        .execute(self.db.write())
        .await?;
        Ok(())
    }

    async fn get_node(&self, name: &str) -> Result<Option<NodeRow>> {
        let row = query(format!("{NODE_COLS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(self.db.read())
            .await?;
        row.as_ref().map(node_row).transpose()
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        let rows = query(format!("{NODE_COLS} ORDER BY name"))
            .fetch_all(self.db.read())
            .await?;
        rows.iter().map(node_row).collect()
    }

    async fn mark_dead_nodes(&self, silent_since: DateTime<Utc>) -> Result<Vec<String>> {
        let rows = query(
            "UPDATE nodes SET state = 'dead' \
             WHERE state = 'up' AND last_seen < ? RETURNING name",
        )
        .bind(millis(silent_since))
        .fetch_all(self.db.write())
        .await?;
        rows.iter().map(|r| r.get(0)).collect()
    }
}
