//! Applying the batch with `nft -j -f -` (one atomic transaction), removing our table, and
//! enabling IPv4 forwarding in the daemon's network namespace.

use nftables::batch::Batch;

/// Firewall failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// `nft` failed or is missing.
    #[error("nft failed: {0} (is the `nftables` package installed and are we allowed CAP_NET_ADMIN?)")]
    Nft(String),
    /// The sysctl could not be written.
    #[error("cannot enable net.ipv4.ip_forward: {0}")]
    Sysctl(String),
}

/// Apply a batch atomically.
pub async fn apply(batch: Batch<'_>) -> Result<(), ApplyError> {
    let nft = batch.to_nftables();
    nftables::helper::apply_ruleset_async(&nft)
        .await
        .map_err(|e| ApplyError::Nft(e.to_string()))
}

/// Remove our table (no error when it does not exist).
pub async fn remove(table: &str) -> Result<(), ApplyError> {
    apply(super::rules::teardown(table)).await
}

/// `net.ipv4.ip_forward = 1` (per network namespace).
pub fn enable_forwarding() -> Result<(), ApplyError> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).map(|s| s.trim() == "1").unwrap_or(false) {
        return Ok(());
    }
    std::fs::write(p, "1\n").map_err(|e| ApplyError::Sysctl(e.to_string()))
}
