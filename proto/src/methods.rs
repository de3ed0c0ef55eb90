//! The method table: one type per JSON-RPC method.
//!
//! Each [`Method`] names the wire method and fixes its parameter and result types.
//! The daemon registers handlers through these types and the client calls through
//! them, so both sides always agree.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backup::*;
use crate::health::*;
use crate::op::*;
use crate::prune::*;
use crate::pull::*;
use crate::push::*;
use crate::reconcile::*;
use crate::remote_ls::*;
use crate::remotes::*;
use crate::restore::*;
use crate::run::*;
use crate::schedule::*;

/// A JSON-RPC method of abssd.
pub trait Method {
    /// Wire name, e.g. `backup.create`.
    const NAME: &'static str;
    /// Whether it can change anything, so that only root and the operator group
    /// may call it (`backup.reconcile` needs them only with `apply`).
    const MUTATES: bool;
    /// The `params` object.
    type Params: Serialize + DeserializeOwned + crate::limits::Bounded + Send + 'static;
    /// The `result`.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

macro_rules! methods {
    ($($(#[$doc:meta])* $ty:ident = $name:literal, mutates: $m:literal, $params:ty => $out:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                const MUTATES: bool = $m;
                type Params = $params;
                type Output = $out;
            }
        )*
        /// Every method name, for documentation and tests.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

methods! {
    /// Version, uptime, socket, paths, running operations.
    DaemonStatusMethod = "daemon.status", mutates: false, NoParams => DaemonStatus;
    /// Per instance: backup age, verification, last job, timer, leftovers,
    /// drift and free space, as probe results (`abssctl doctor`).
    DaemonHealth = "daemon.health", mutates: false, HealthParams => HealthReport;
    /// Index entries, newest first.
    BackupList = "backup.list", mutates: false, ListParams => ListResult;
    /// One index entry.
    BackupShow = "backup.show", mutates: false, ShowParams => ShowResult;
    /// Create a backup archive.
    BackupCreate = "backup.create", mutates: true, CreateParams => OpOutcome<CreatePlan, CreateResult>;
    /// Restore a backup into its instance (live) or into a new directory.
    BackupRestore = "backup.restore", mutates: true, RestoreParams => OpOutcome<RestorePlan, RestoreResult>;
    /// Compare the index with the archives on disk; optionally fix the index.
    BackupReconcile = "backup.reconcile", mutates: true, ReconcileParams => OpOutcome<ReconcilePlan, ReconcileResult>;
    /// Recompute archive checksums and record the outcome.
    BackupVerify = "backup.verify", mutates: true, VerifyParams => OpOutcome<VerifyPlan, VerifyResult>;
    /// Apply a retention policy: remove the backups no rule keeps.
    BackupPrune = "backup.prune", mutates: true, PruneParams => OpOutcome<PrunePlan, PruneResult>;
    /// Mark a backup protected: no prune removes it.
    BackupProtect = "backup.protect", mutates: true, ProtectParams => OpOutcome<serde_json::Value, ProtectResult>;
    /// Take a backup's protection away.
    BackupUnprotect = "backup.unprotect", mutates: true, ProtectParams => OpOutcome<serde_json::Value, ProtectResult>;
    /// The backup job: create, prune, verify, reconcile, per instance.
    BackupRun = "backup.run", mutates: true, RunParams => OpOutcome<RunPlan, RunResult>;
    /// Copy backups to a remote (S3-compatible object storage).
    BackupPush = "backup.push", mutates: true, PushParams => OpOutcome<PushPlan, PushResult>;
    /// Write a timer's calendar, enable and start it.
    ScheduleEnable = "schedule.enable", mutates: true, ScheduleParams => OpOutcome<serde_json::Value, ScheduleResult>;
    /// Stop and disable a timer, remove its calendar.
    ScheduleDisable = "schedule.disable", mutates: true, ScheduleParams => OpOutcome<serde_json::Value, ScheduleResult>;
    /// The timers, their calendars, next and last runs, as systemd has them.
    ScheduleShow = "schedule.show", mutates: false, ScheduleShowParams => ScheduleShowResult;
    /// Download a backup's copy from a remote; make its archive available again.
    BackupPull = "backup.pull", mutates: true, PullParams => OpOutcome<serde_json::Value, PullResult>;
    /// The remotes of abssd.yml: where, how, and where their credentials are read from.
    RemoteList = "remote.list", mutates: false, NoParams => RemoteListResult;
    /// Check a remote: credentials, list, put, get and delete of a probe object.
    RemoteTest = "remote.test", mutates: true, RemoteTestParams => RemoteTestResult;
    /// One operation.
    OpGet = "op.get", mutates: false, OpIdParams => OpInfo;
    /// Operations this daemon knows.
    OpList = "op.list", mutates: false, OpListParams => OpListResult;

    /// What a remote holds, per backup, against the index. Operator only: it
    /// makes requests with the remote's credentials.
    RemoteLs = "remote.ls", mutates: true, RemoteLsParams => RemoteLsResult;
}

/// The `op.watch` subscription: replays an operation's events, then follows it
/// live; the last event is `finished` or `failed`.
#[derive(Debug, Clone, Copy)]
pub struct OpWatch;

impl OpWatch {
    /// Subscribe method.
    pub const NAME: &'static str = "op.watch";
    /// Notification method carrying each [`Event`].
    pub const NOTIFICATION: &'static str = "op.event";
    /// Unsubscribe method.
    pub const UNSUBSCRIBE: &'static str = "op.unwatch";
}

/// Typed calls over any jsonrpsee client (the `client` feature).
#[cfg(feature = "client")]
pub mod call {
    use jsonrpsee::core::client::{
        ClientT, Error as ClientError, Subscription, SubscriptionClientT,
    };
    use jsonrpsee::core::traits::ToRpcParams;
    use serde::Serialize;
    use serde_json::value::RawValue;

    use super::{Method, OpWatch};
    use crate::error::{ErrorData, ErrorKind, WireError};
    use crate::op::{Event, OpIdParams};

    /// Sends any serializable value as the named `params` object.
    struct AsParams<'a, T>(&'a T);

    impl<T: Serialize> ToRpcParams for AsParams<'_, T> {
        fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
            serde_json::value::to_raw_value(self.0).map(Some)
        }
    }

    /// Call method `M` and decode its result; errors become [`WireError`]s.
    pub async fn call<M: Method>(
        client: &impl ClientT,
        params: &M::Params,
    ) -> Result<M::Output, WireError>
    where
        M::Params: Sync,
    {
        client
            .request(M::NAME, AsParams(params))
            .await
            .map_err(wire_error)
    }

    /// Subscribe to an operation's events (`op.watch`).
    pub async fn watch(
        client: &impl SubscriptionClientT,
        op_id: &str,
    ) -> Result<Subscription<Event>, WireError> {
        let params = OpIdParams {
            op_id: op_id.to_owned(),
        };
        client
            .subscribe(OpWatch::NAME, AsParams(&params), OpWatch::UNSUBSCRIBE)
            .await
            .map_err(wire_error)
    }

    /// Turn a jsonrpsee client error into the typed error: abssd errors carry their
    /// kind in `data`; JSON-RPC protocol errors about parameters are validation
    /// errors; anything else means the daemon could not be talked to.
    pub fn wire_error(err: ClientError) -> WireError {
        match err {
            ClientError::Call(obj) => {
                let data = obj
                    .data()
                    .and_then(|raw| serde_json::from_str::<ErrorData>(raw.get()).ok());
                match data {
                    Some(d) => WireError {
                        kind: d.kind,
                        message: obj.message().to_owned(),
                        detail: d.detail,
                    },
                    None => {
                        let kind = match obj.code() {
                            -32602 | -32600 | -32700 => ErrorKind::Validation,
                            -32601 => ErrorKind::NotFound,
                            _ => ErrorKind::Internal,
                        };
                        WireError::new(kind, obj.message())
                    }
                }
            }
            ClientError::ParseError(e) => WireError::new(
                ErrorKind::Internal,
                format!("unexpected answer from abssd: {e}"),
            ),
            other => WireError::new(
                ErrorKind::Environment,
                format!("lost the connection to abssd: {other}"),
            ),
        }
    }
}
