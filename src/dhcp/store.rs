//! Leases in redb (table `dhcp_leases`, key = address). Bound leases only; offers stay in
//! memory. The server commits a batch durably before it sends the ACKs of that batch.

use std::net::Ipv4Addr;

use super::policy::Change;
use super::pool::{Lease, LeaseState};
use crate::store::{Store, StoreError, Table};

/// The lease table.
pub const LEASES: Table<Lease> = Table::new("dhcp_leases");

/// Every stored lease (including expired ones not yet swept).
pub fn load(store: &Store) -> Result<Vec<Lease>, StoreError> {
    Ok(store
        .list(LEASES)?
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.state == LeaseState::Bound)
        .collect())
}

/// Apply a batch of changes in one durable transaction (group commit).
pub fn commit(store: &Store, changes: &[Change]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    store.write(|tx| {
        for c in changes {
            match c {
                Change::Bind(l) => tx.put(LEASES, &l.ip.to_string(), l)?,
                Change::Free(ip) => {
                    tx.delete(LEASES, &ip.to_string())?;
                }
            }
        }
        Ok::<_, StoreError>(())
    })
}

/// Delete expired leases (no fsync: losing the deletion only brings back an expired lease,
/// which the next sweep removes again).
pub fn forget(store: &Store, ips: &[Ipv4Addr]) -> Result<(), StoreError> {
    if ips.is_empty() {
        return Ok(());
    }
    store.write_eventual(|tx| {
        for ip in ips {
            tx.delete(LEASES, &ip.to_string())?;
        }
        Ok::<_, StoreError>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let l = Lease {
            mac: "02:00:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 20, 0, 100),
            hostname: Some("box".into()),
            expires: 99,
            state: LeaseState::Bound,
        };
        {
            let s = Store::open(&path).unwrap();
            commit(&s, &[Change::Bind(l.clone())]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(load(&s).unwrap(), vec![l.clone()]);
        commit(&s, &[Change::Free(l.ip)]).unwrap();
        assert!(load(&s).unwrap().is_empty());
    }
}
