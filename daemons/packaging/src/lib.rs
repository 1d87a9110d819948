//! Tests only: see `tests/`. The units live in `systemd/` at the repository
//! root, the Debian packaging in `debian/`.
