//! The operator's view of the fleet: nodes, devices and slots, what each
//! holds and how busy it is.

use crate::*;

impl Platform {
    // ---- Fleet -----------------------------------------------------------

    /// A page of the fleet's nodes, by name: devices and slots, what each
    /// holds and how busy it is (operator only).
    ///
    /// The fleet is built in memory from this process's devices and the
    /// nodes agents registered (one entry per node), and naming what
    /// slots hold needs every version's images, so the page is cut from
    /// that list by name: the nodes named after the cursor's id.
    pub async fn fleet(
        &self,
        account: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<accelhub_domain::FleetNode>> {
        if account.role != Role::Operator {
            return Err(CoreError::Forbidden(
                "only the operator sees the fleet".into(),
            ));
        }
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        // Image ids name an artifact's digest; name it by IP version.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for latest in self.store.list_latest_versions().await? {
            for v in self.store.list_versions(&latest.ip).await? {
                for imp in &v.implementations {
                    names.insert(Self::image_id(imp).0, format!("{}@{}", v.ip, v.version));
                }
            }
        }
        let mut nodes: BTreeMap<String, accelhub_domain::FleetNode> = BTreeMap::new();
        for (node, d) in self.executor.devices() {
            let entry = nodes
                .entry(node.clone())
                .or_insert_with(|| accelhub_domain::FleetNode {
                    name: node,
                    health: "up".into(),
                    devices: Vec::new(),
                });
            entry.devices.push(accelhub_domain::FleetDevice {
                utilisation: d.busy as f64 / d.slots.max(1) as f64,
                class: d.class,
                slots: d.slots,
                busy: d.busy,
                loaded: d
                    .images
                    .iter()
                    .map(|i| names.get(&i.0).cloned().unwrap_or_else(|| i.0.clone()))
                    .collect(),
                resident: d.resident,
                hardware: d.hardware,
            });
        }
        // Remote agents' nodes, as their last heartbeat described them.
        for n in self.store.list_nodes().await? {
            let mut devices = n.devices;
            for d in &mut devices {
                for l in &mut d.loaded {
                    if let Some(name) = names.get(l.as_str()) {
                        *l = name.clone();
                    }
                }
            }
            let health = if n.state == accelhub_domain::NodeState::Up {
                "up".to_string()
            } else {
                format!(
                    "dead: no heartbeat since {}",
                    n.last_seen.format("%Y-%m-%d %H:%M:%S UTC")
                )
            };
            nodes.insert(
                n.name.clone(),
                accelhub_domain::FleetNode {
                    name: n.name,
                    health,
                    devices,
                },
            );
        }
        // Nodes are ordered by name, so a node that went away since the
        // page before does not lose the place.
        if let Some(c) = after {
            nodes = nodes.split_off(c.id.as_str());
            nodes.remove(c.id.as_str());
        }
        let nodes: Vec<accelhub_domain::FleetNode> = nodes.into_values().collect();
        Ok(accelhub_domain::Page::cut(nodes, 0, limit, |n| {
            accelhub_domain::Cursor::named(&n.name)
        }))
    }
}
