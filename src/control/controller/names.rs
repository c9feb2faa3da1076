//! The names the controller writes into the cluster and looks for there: its
//! `controllerName`, its server-side-apply field manager and its finalizer. Below
//! `controller.rs` and `reconcile.rs`, which both use them.

/// `spec.controllerName` of the GatewayClasses this controller serves.
pub const CONTROLLER_NAME: &str = "waypoint.pingora.dev/controller";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "waypoint-controller";
/// Finalizer on Gateways: removes the cluster-scoped ClusterRoleBinding.
pub const FINALIZER: &str = "waypoint.pingora.dev/cleanup";
