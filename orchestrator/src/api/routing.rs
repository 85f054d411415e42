//! The route table. Every route of the service is registered through [`Routes`], which adds it
//! to the axum router and records its method and path beside it, so that [`super::routes`] is
//! the one list of what the service serves. `tests/openapi.rs` checks that the OpenAPI document
//! ([`super::openapi`]) has an operation for each entry, that each entry answers, and that
//! every `.route("…")` written in the sources by hand (a router merged with
//! [`Routes::merge_router`]) is in the table too: a route added without documenting it fails
//! the tests.

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::service::App;

/// One entry of the table: an HTTP method and the path as axum spells it (`{id}`, `{*file}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, `DELETE`… (a `GET` route answers `HEAD` too).
    pub method: &'static str,
    pub path: &'static str,
}

/// A router and the table of its routes, built together.
#[derive(Default)]
pub struct Routes {
    router: Router<App>,
    table: Vec<Route>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// `GET path` (and `HEAD`).
    pub fn get<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add("GET", path, routing::get(handler))
    }

    /// `POST path`.
    pub fn post<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add("POST", path, routing::post(handler))
    }

    /// `PUT path`.
    pub fn put<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add("PUT", path, routing::put(handler))
    }

    /// `PATCH path`.
    pub fn patch<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add("PATCH", path, routing::patch(handler))
    }

    /// `DELETE path`.
    pub fn delete<H, T>(self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add("DELETE", path, routing::delete(handler))
    }

    fn add(mut self, method: &'static str, path: &'static str, route: MethodRouter<App>) -> Routes {
        self.router = self.router.route(path, route);
        self.table.push(Route { method, path });
        self
    }

    /// Both routers and both tables.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// A router built with plain `Router::route` elsewhere, and the routes it serves, as
    /// `(method, path)`. The tests hold the list to the `.route("…")` calls in the sources and
    /// check that each listed route answers.
    pub fn merge_router(
        mut self,
        router: Router<App>,
        table: &[(&'static str, &'static str)],
    ) -> Routes {
        self.router = self.router.merge(router);
        self.table
            .extend(table.iter().map(|&(method, path)| Route { method, path }));
        self
    }

    /// The router changed by `f` (layers), with the same table.
    pub fn map_router(mut self, f: impl FnOnce(Router<App>) -> Router<App>) -> Routes {
        self.router = f(self.router);
        self
    }

    /// Every route recorded so far, in the order they were added.
    pub fn table(&self) -> &[Route] {
        &self.table
    }

    pub fn into_router(self) -> Router<App> {
        self.router
    }
}
