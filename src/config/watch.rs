//! File watching for hot reload (filled in with the reloader).
