//! STUB (not committed)
use crate::error::Result;
use std::future::Future;
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitState {
    pub unit: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
}
impl UnitState {
    pub fn is_active(&self) -> bool {
        true
    }
    pub fn is_enabled(&self) -> bool {
        true
    }
    pub fn is_loaded(&self) -> bool {
        true
    }
}
pub trait Units: Send + Sync {
    fn state(&self, unit: &str) -> impl Future<Output = Result<UnitState>> + Send;
    fn start(&self, unit: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop(&self, unit: &str) -> impl Future<Output = Result<()>> + Send;
    fn reload(&self, unit: &str) -> impl Future<Output = Result<()>> + Send;
    fn daemon_reload(&self) -> impl Future<Output = Result<()>> + Send;
}
#[derive(Debug, Clone)]
pub struct Systemd;
impl Systemd {
    pub async fn connect(_address: Option<&str>) -> Result<Systemd> {
        todo!()
    }
    pub fn address(&self) -> &str {
        ""
    }
}
impl Units for Systemd {
    async fn state(&self, _unit: &str) -> Result<UnitState> {
        todo!()
    }
    async fn start(&self, _unit: &str) -> Result<()> {
        todo!()
    }
    async fn stop(&self, _unit: &str) -> Result<()> {
        todo!()
    }
    async fn reload(&self, _unit: &str) -> Result<()> {
        todo!()
    }
    async fn daemon_reload(&self) -> Result<()> {
        todo!()
    }
}
