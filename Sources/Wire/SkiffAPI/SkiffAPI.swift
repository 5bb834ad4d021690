// SkiffAPI: Skiff's own ttrpc services, generated from proto/skiff by scripts/gen-proto:
// the diag service that shimdiag calls on a running shim.
