//! Settings: database connections, encryption options and routers.
