//! DHCPv4 server for the LAN: pure decision in [`policy`], lease state in [`pool`],
//! persistence in [`store`], sockets in [`server`].

pub mod policy;
pub mod pool;
pub mod server;
pub mod store;

use std::sync::Arc;

pub use pool::Lease;

/// Live bound leases, published by the DHCP server for DNS and status (cheap to clone).
#[derive(Clone)]
pub struct LeaseBoard(Arc<tokio::sync::watch::Sender<Arc<Vec<Lease>>>>);

impl Default for LeaseBoard {
    fn default() -> Self {
        LeaseBoard(Arc::new(tokio::sync::watch::channel(Arc::new(Vec::new())).0))
    }
}

impl LeaseBoard {
    /// Publish a new lease list.
    pub fn publish(&self, leases: Vec<Lease>) {
        self.0.send_if_modified(|cur| {
            if **cur == leases {
                return false;
            }
            *cur = Arc::new(leases);
            true
        });
    }
    /// The current list.
    pub fn current(&self) -> Arc<Vec<Lease>> {
        self.0.borrow().clone()
    }
    /// Subscribe to changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Vec<Lease>>> {
        self.0.subscribe()
    }
}
