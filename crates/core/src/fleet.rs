//! The operator's view of the fleet: nodes, devices and slots, what each
//! holds and how busy it is.

use crate::*;

impl Platform {
    // ---- Fleet -----------------------------------------------------------

    /// Nodes, devices and slots, what each holds and how busy it is
    /// (operator only).
    pub async fn fleet(&self, account: &Account) -> Result<accelhub_domain::Fleet> {
        if account.role != Role::Operator {
            return Err(CoreError::Forbidden(
                "only the operator sees the fleet".into(),
            ));
        }
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
        Ok(accelhub_domain::Fleet {
            nodes: nodes.into_values().collect(),
        })
    }
}
