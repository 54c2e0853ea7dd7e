//! Nodes: the `flowd serve` processes sharing this database, with their health (alive,
//! stopped, lost), last heartbeat and the runs they hold now.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::Visitor;
use crate::console::view::when_millis;

pub struct NodeLine {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub status: String,
    pub started: String,
    pub heartbeat: String,
    pub runs_held: u64,
}

#[derive(Template)]
#[template(path = "console/nodes.html")]
struct NodesPage {
    layout: Layout,
    nodes: Vec<NodeLine>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
) -> Result<Response, ConsoleError> {
    let nodes = console.engine.nodes().await?;
    let page = NodesPage {
        layout: Layout::new(&visitor, "nodes", "Nodes"),
        nodes: nodes
            .into_iter()
            .map(|n| NodeLine {
                status: n.status.as_str().to_string(),
                started: when_millis(Some(n.started_at)),
                heartbeat: when_millis(Some(n.heartbeat_at)),
                id: n.id,
                hostname: n.hostname,
                version: n.version,
                runs_held: n.runs_held,
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}
