//! The machine graph (spec orchestration.md §1): nodes and edges of one machine, shallow `data`
//! merges, edges only between the machine's own nodes, deletes that take their edges, the Gate B
//! (Gate A for deletes) and the `graph.*` audit events (§5.3), on every backend.

mod common;

use common::market::all_items;
use common::{TestServer, backends, expect_error, expect_json};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

const DISABLED: (&str, &str) = ("PEAQOS_MACHINE_IDENTITY_VERIFICATION", "disabled");

/// A server with an active machine, and the graph verbs of one machine.
struct World {
    srv: TestServer,
    machine: String,
}

impl World {
    async fn start(backend: &common::Backend) -> World {
        let srv = TestServer::start(backend, &[DISABLED]).await;
        let machine = srv.unverified_active_machine().await;
        World { srv, machine }
    }

    /// `/api/v1/machines/{machine}/graph{rest}`.
    fn at(&self, machine: &str, rest: &str) -> String {
        format!("/api/v1/machines/{machine}/graph{rest}")
    }

    async fn post(&self, rest: &str, body: &Value) -> Response {
        self.srv
            .post_json(&self.at(&self.machine, rest), body)
            .await
    }

    async fn patch(&self, rest: &str, body: &Value) -> Response {
        self.srv
            .patch_json(&self.at(&self.machine, rest), body)
            .await
    }

    async fn delete(&self, rest: &str) -> Response {
        self.srv.delete(&self.at(&self.machine, rest)).await
    }

    /// Creates a node: its record.
    async fn node(&self, body: Value) -> Value {
        expect_json(self.post("/nodes", &body).await, StatusCode::CREATED).await["item"].clone()
    }

    /// A `task` node titled `title`: its id.
    async fn node_id(&self, title: &str) -> String {
        self.node(json!({"type": "task", "title": title})).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates an edge: its record.
    async fn edge(&self, body: Value) -> Value {
        expect_json(self.post("/edges", &body).await, StatusCode::CREATED).await["item"].clone()
    }

    async fn edge_id(&self, source: &str, target: &str) -> String {
        self.edge(json!({"sourceNodeId": source, "targetNodeId": target, "type": "connects"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn graph(&self) -> Value {
        expect_json(
            self.srv.get(&self.at(&self.machine, "")).await,
            StatusCode::OK,
        )
        .await
    }

    /// The audit events matching `query` (`type=…&resourceId=…`), newest first.
    async fn events(&self, query: &str) -> Vec<Value> {
        all_items(&self.srv, &format!("/api/v1/audit-events?{query}")).await
    }

    async fn stop(self) {
        self.srv.stop().await;
    }
}

fn ids(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn nodes_are_created_patched_and_listed() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let bare = w
            .node(json!({"type": "machine", "title": "The robot"}))
            .await;
        assert!(bare["id"].as_str().unwrap().starts_with("gnd_"), "{bare}");
        assert_eq!(bare["machineId"], w.machine.as_str());
        assert_eq!(bare["type"], "machine");
        assert_eq!(bare["title"], "The robot");
        assert_eq!(bare["status"], "active");
        assert!(bare["refId"].is_null(), "{bare}");
        assert_eq!(bare["position"], json!({"x": 0.0, "y": 0.0}));
        assert_eq!(bare["data"], json!({}));
        assert!(bare["createdAt"].is_string() && bare["updatedAt"].is_string());

        let full = w
            .node(json!({"type": "catalog-entry", "title": "Pyth", "refId": "pyth:hermes-latest-price",
                         "position": {"y": -12.5}, "data": {"a": 1, "b": {"c": 1}, "keep": true}}))
            .await;
        assert_eq!(full["refId"], "pyth:hermes-latest-price");
        assert_eq!(full["position"], json!({"x": 0.0, "y": -12.5}));
        let id = full["id"].as_str().unwrap();

        // Only the sent coordinates change; data merges shallowly; "" clears refId.
        let patched = expect_json(
            w.patch(
                &format!("/nodes/{id}"),
                &json!({"title": "Pyth feed", "type": "skill", "status": "degraded",
                        "position": {"x": 3}, "refId": "",
                        "data": {"b": {"d": 2}, "e": [1], "keep": true}}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(patched["title"], "Pyth feed");
        assert_eq!(patched["type"], "skill");
        assert_eq!(patched["status"], "degraded");
        assert_eq!(patched["position"], json!({"x": 3.0, "y": -12.5}));
        assert!(patched["refId"].is_null(), "{patched}");
        assert_eq!(
            patched["data"],
            json!({"a": 1, "b": {"d": 2}, "e": [1], "keep": true})
        );
        assert_eq!(patched["createdAt"], full["createdAt"]);
        for status in ["draft", "blocked", "active"] {
            let item = expect_json(
                w.patch(&format!("/nodes/{id}"), &json!({ "status": status }))
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(item["item"]["status"], status);
        }

        // A patch that changes nothing answers the node and writes no event.
        let before = w
            .events(&format!("type=graph.node.updated&resourceId={id}"))
            .await;
        let same = expect_json(
            w.patch(
                &format!("/nodes/{id}"),
                &json!({"title": "Pyth feed", "data": {"a": 1}, "position": {}}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(same["item"]["title"], "Pyth feed");
        let after = w
            .events(&format!("type=graph.node.updated&resourceId={id}"))
            .await;
        assert_eq!(before.len(), after.len());

        // The graph: nodes oldest first, with the stored values.
        let graph = w.graph().await;
        assert_eq!(ids(&graph["nodes"]), [bare["id"].as_str().unwrap(), id]);
        assert_eq!(graph["edges"], json!([]));
        assert_eq!(graph["nodes"][1]["data"], patched["data"]);
        assert_eq!(graph["nodes"][1]["status"], "active");

        // Audit: created with {type, title, refId}; updated with the changed fields.
        let created = w
            .events(&format!(
                "type=graph.node.created&resourceType=graph-node&resourceId={id}"
            ))
            .await;
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["machineId"], w.machine.as_str());
        assert_eq!(
            created[0]["payload"],
            json!({"type": "catalog-entry", "title": "Pyth", "refId": "pyth:hermes-latest-price"})
        );
        let updated = w
            .events(&format!("type=graph.node.updated&resourceId={id}"))
            .await;
        assert_eq!(updated.len(), 4, "{updated:?}");
        let mut fields: Vec<&str> = updated[3]["payload"]["changedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["data", "position", "refId", "status", "title", "type"]
        );
        assert_eq!(
            updated[0]["payload"],
            json!({"changedFields": ["status"]}),
            "newest first"
        );
        w.stop().await;
    }
}

#[tokio::test]
async fn node_requests_are_validated() {
    for backend in backends() {
        let w = World::start(&backend).await;
        for (body, field) in [
            (json!({"title": "t"}), "type"),
            (json!({"type": "robot", "title": "t"}), "type"),
            (json!({"type": "task"}), "title"),
            (json!({"type": "task", "title": "  "}), "title"),
            (json!({"type": "task", "title": 5}), "title"),
            (json!({"type": "task", "title": "t", "refId": ""}), "refId"),
            (json!({"type": "task", "title": "t", "refId": " "}), "refId"),
            (
                json!({"type": "task", "title": "t", "position": {"x": "left"}}),
                "position.x",
            ),
        ] {
            let err = expect_error(
                w.post("/nodes", &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        for body in [
            json!({"type": "task", "title": "t", "data": [1]}),
            json!({"type": "task", "title": "t", "position": 3}),
            json!([]),
        ] {
            expect_error(
                w.post("/nodes", &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
        }
        assert_eq!(w.graph().await["nodes"], json!([]));
        assert!(
            w.events(&format!("type=graph.node.created&machineId={}", w.machine))
                .await
                .is_empty()
        );

        let id = w.node_id("n").await;
        for (body, field) in [
            (json!({"status": "broken"}), "status"),
            (json!({"type": "robot"}), "type"),
            (json!({"title": ""}), "title"),
            (json!({"refId": "  "}), "refId"),
            (json!({"position": {"y": "up"}}), "position.y"),
        ] {
            let err = expect_error(
                w.patch(&format!("/nodes/{id}"), &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        let node = &w.graph().await["nodes"][0];
        assert_eq!(node["title"], "n");
        assert_eq!(node["status"], "active");
        w.stop().await;
    }
}

#[tokio::test]
async fn edges_connect_nodes_of_one_machine() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let a = w.node_id("a").await;
        let b = w.node_id("b").await;
        let edge = w
            .edge(
                json!({"sourceNodeId": a, "targetNodeId": b, "type": "route-select",
                         "data": {"w": 1, "m": {"x": 1}}}),
            )
            .await;
        assert!(edge["id"].as_str().unwrap().starts_with("ged_"), "{edge}");
        assert_eq!(edge["machineId"], w.machine.as_str());
        assert_eq!(edge["sourceNodeId"], a.as_str());
        assert_eq!(edge["targetNodeId"], b.as_str());
        assert_eq!(edge["type"], "route-select");
        assert!(
            edge.get("label").is_none(),
            "label is omitted when unset: {edge}"
        );
        let id = edge["id"].as_str().unwrap();

        // Self-loops and parallel edges are allowed.
        let lp = w
            .edge(json!({"sourceNodeId": a, "targetNodeId": a, "type": "sync", "label": "self"}))
            .await;
        assert_eq!(lp["label"], "self");
        let parallel = w.edge_id(&a, &b).await;

        // Edges only between this machine's nodes.
        let other = w.srv.unverified_active_machine().await;
        let foreign = expect_json(
            w.srv
                .post_json(
                    &w.at(&other, "/nodes"),
                    &json!({"type": "task", "title": "theirs"}),
                )
                .await,
            StatusCode::CREATED,
        )
        .await["item"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for (body, field) in [
            (
                json!({"sourceNodeId": a, "targetNodeId": foreign, "type": "connects"}),
                "targetNodeId",
            ),
            (
                json!({"sourceNodeId": foreign, "targetNodeId": a, "type": "connects"}),
                "sourceNodeId",
            ),
            (
                json!({"sourceNodeId": "gnd_nope", "targetNodeId": a, "type": "connects"}),
                "sourceNodeId",
            ),
        ] {
            let err = expect_error(
                w.post("/edges", &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
            assert_eq!(err["details"]["reason"], "unknown-node", "{body}: {err}");
        }
        for (body, field) in [
            (
                json!({"targetNodeId": a, "type": "connects"}),
                "sourceNodeId",
            ),
            (
                json!({"sourceNodeId": a, "type": "connects"}),
                "targetNodeId",
            ),
            (json!({"sourceNodeId": a, "targetNodeId": b}), "type"),
            (
                json!({"sourceNodeId": a, "targetNodeId": b, "type": "links"}),
                "type",
            ),
            (
                json!({"sourceNodeId": a, "targetNodeId": b, "type": "connects", "label": " "}),
                "label",
            ),
        ] {
            let err = expect_error(
                w.post("/edges", &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
        }
        assert_eq!(
            ids(&w.graph().await["edges"]),
            [id, lp["id"].as_str().unwrap(), parallel.as_str()]
        );

        // PATCH: label set then removed with "", data merged, endpoints re-checked.
        let labelled = expect_json(
            w.patch(
                &format!("/edges/{id}"),
                &json!({"label": "primary", "type": "execute", "data": {"m": {"y": 2}, "n": 0}}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert_eq!(labelled["label"], "primary");
        assert_eq!(labelled["type"], "execute");
        assert_eq!(labelled["data"], json!({"w": 1, "m": {"y": 2}, "n": 0}));
        let cleared = expect_json(
            w.patch(
                &format!("/edges/{id}"),
                &json!({"label": "", "targetNodeId": a}),
            )
            .await,
            StatusCode::OK,
        )
        .await["item"]
            .clone();
        assert!(cleared.get("label").is_none(), "{cleared}");
        assert_eq!(cleared["targetNodeId"], a.as_str());
        let stored = w.graph().await["edges"][0].clone();
        assert!(stored.get("label").is_none(), "{stored}");
        assert_eq!(stored["targetNodeId"], a.as_str());
        for (body, field) in [
            (json!({"targetNodeId": foreign}), "targetNodeId"),
            (json!({"sourceNodeId": "gnd_nope"}), "sourceNodeId"),
        ] {
            let err = expect_error(
                w.patch(&format!("/edges/{id}"), &body).await,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
            )
            .await;
            assert_eq!(err["details"]["field"], field, "{body}: {err}");
            assert_eq!(err["details"]["reason"], "unknown-node", "{err}");
        }
        let err = expect_error(
            w.patch(&format!("/edges/{id}"), &json!({"type": "links"}))
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(err["details"]["field"], "type");
        assert_eq!(
            w.graph().await["edges"][0],
            stored,
            "refused patches change nothing"
        );

        // Audit.
        let created = w
            .events(&format!(
                "type=graph.edge.created&resourceType=graph-edge&resourceId={id}"
            ))
            .await;
        assert_eq!(created.len(), 1);
        assert_eq!(
            created[0]["payload"],
            json!({"sourceNodeId": a, "targetNodeId": b, "type": "route-select"})
        );
        assert_eq!(created[0]["machineId"], w.machine.as_str());
        let updated = w
            .events(&format!("type=graph.edge.updated&resourceId={id}"))
            .await;
        assert_eq!(updated.len(), 2);
        assert_eq!(
            updated[0]["payload"],
            json!({"changedFields": ["targetNodeId", "label"]})
        );
        let mut fields: Vec<&str> = updated[1]["payload"]["changedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["data", "label", "type"]);
        let all_edges = w
            .events(&format!("type=graph.edge.created&machineId={}", w.machine))
            .await;
        assert_eq!(all_edges.len(), 3, "one per edge of this machine");
        w.stop().await;
    }
}

#[tokio::test]
async fn deleting_a_node_deletes_its_edges() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let a = w.node_id("a").await;
        let b = w.node_id("b").await;
        let c = w.node_id("c").await;
        let ab = w.edge_id(&a, &b).await;
        let bc = w.edge_id(&b, &c).await;
        let ca = w.edge_id(&c, &a).await;
        let aa = w.edge_id(&a, &a).await;
        let bc2 = w.edge_id(&b, &c).await;

        let response = w.delete(&format!("/nodes/{a}")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let graph = w.graph().await;
        assert_eq!(ids(&graph["nodes"]), [b.as_str(), c.as_str()]);
        assert_eq!(ids(&graph["edges"]), [bc.as_str(), bc2.as_str()]);

        let node_events = w
            .events(&format!(
                "type=graph.node.deleted&resourceType=graph-node&resourceId={a}"
            ))
            .await;
        assert_eq!(node_events.len(), 1);
        assert_eq!(node_events[0]["machineId"], w.machine.as_str());
        let mut deleted: Vec<String> = w
            .events(&format!(
                "type=graph.edge.deleted&resourceType=graph-edge&machineId={}",
                w.machine
            ))
            .await
            .iter()
            .map(|e| e["resourceId"].as_str().unwrap().to_string())
            .collect();
        deleted.sort();
        let mut expected = vec![ab.clone(), ca.clone(), aa.clone()];
        expected.sort();
        assert_eq!(deleted, expected, "one graph.edge.deleted per removed edge");

        // Deleting an edge, then deleting it again.
        let response = w.delete(&format!("/edges/{bc}")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(ids(&w.graph().await["edges"]), [bc2.as_str()]);
        let events = w
            .events(&format!("type=graph.edge.deleted&resourceId={bc}"))
            .await;
        assert_eq!(events.len(), 1);
        for path in [
            format!("/edges/{bc}"),
            format!("/edges/{ab}"),
            format!("/nodes/{a}"),
        ] {
            expect_error(w.delete(&path).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        }
        for path in [format!("/nodes/{a}"), format!("/edges/{ab}")] {
            expect_error(
                w.patch(&path, &json!({"data": {}})).await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        }
        expect_error(
            w.post(
                "/edges",
                &json!({"sourceNodeId": a, "targetNodeId": b, "type": "connects"}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        )
        .await;
        w.stop().await;
    }
}

/// 404s for unknown machines and for another machine's nodes and edges; Gate B on reads and
/// writes, Gate A on deletes.
#[tokio::test]
async fn graph_routes_answer_404_and_apply_the_gates() {
    for backend in backends() {
        let w = World::start(&backend).await;
        let a = w.node_id("a").await;
        let b = w.node_id("b").await;
        let edge = w.edge_id(&a, &b).await;
        let other = w.srv.unverified_active_machine().await;

        // Another machine's path does not reach this machine's graph.
        let srv = &w.srv;
        for path in [format!("/nodes/{a}"), format!("/edges/{edge}")] {
            expect_error(
                srv.patch_json(&w.at(&other, &path), &json!({"title": "x"}))
                    .await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
            expect_error(
                srv.delete(&w.at(&other, &path)).await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        }
        let theirs = expect_json(srv.get(&w.at(&other, "")).await, StatusCode::OK).await;
        assert_eq!(theirs, json!({"nodes": [], "edges": []}));
        for path in ["/nodes/gnd_nope", "/edges/ged_nope"] {
            expect_error(
                w.patch(path, &json!({})).await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        }

        // Unknown machine.
        let ghost = "mach_nope";
        expect_error(
            srv.get(&w.at(ghost, "")).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        for rest in ["/nodes", "/edges"] {
            expect_error(
                srv.post_json(&w.at(ghost, rest), &json!({})).await,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        }
        let err = expect_error(
            srv.delete(&w.at(ghost, &format!("/nodes/{a}"))).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
        assert_eq!(err["details"]["resource"], "machine", "{err}");

        // A machine that is no longer active: Gate B refuses reads and writes...
        expect_json(
            srv.patch_json(
                &format!("/api/v1/machines/{}", w.machine),
                &json!({"status": "degraded"}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let not_active = |response| async move {
            let err = expect_error(response, StatusCode::CONFLICT, "MACHINE_NOT_ACTIVE").await;
            assert_eq!(err["details"]["status"], "degraded", "{err}");
        };
        not_active(srv.get(&w.at(&w.machine, "")).await).await;
        not_active(
            w.post("/nodes", &json!({"type": "task", "title": "t"}))
                .await,
        )
        .await;
        not_active(
            w.patch(&format!("/nodes/{a}"), &json!({"title": "t"}))
                .await,
        )
        .await;
        not_active(
            w.post(
                "/edges",
                &json!({"sourceNodeId": a, "targetNodeId": b, "type": "connects"}),
            )
            .await,
        )
        .await;
        not_active(
            w.patch(&format!("/edges/{edge}"), &json!({"label": "l"}))
                .await,
        )
        .await;
        // ...but deletes need only Gate A.
        assert_eq!(
            w.delete(&format!("/edges/{edge}")).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            w.delete(&format!("/nodes/{a}")).await.status(),
            StatusCode::NO_CONTENT
        );
        w.stop().await;
    }
}
