//! A client whose network drops (TCP ends without a WebSocket close) leaves its rooms at
//! once: the others see its `presence` leave, not 60 s later at the ping timeout.

use chat_protocol::ServerFrame;
use chat_protocol::frames::PresenceEvent;
use chat_testkit::topology::Topology;
use chat_testkit::{RedisServer, WsClient};

async fn a_vanished_client_leaves_at_once(t: &Topology) {
    let (mut stays, _) = WsClient::connect_as(&t.ws_url(0), "stays", false).await;
    stays.join("lobby").await;
    let (mut goes, _) = WsClient::connect_as(&t.ws_url(1), "goes", true).await;
    goes.join("lobby").await;
    stays
        .recv_until_any(|f| {
            matches!(f, ServerFrame::Presence { user, event: PresenceEvent::Join, .. } if user == "goes")
        })
        .await;
    drop(goes); // the socket closes; no close frame is sent
    // recv_until_any waits 10 s at most, far below the 60 s ping timeout.
    stays
        .recv_until_any(|f| {
            matches!(f, ServerFrame::Presence { user, event: PresenceEvent::Leave, .. } if user == "goes")
        })
        .await;
}

#[tokio::test]
async fn split_a_vanished_client_leaves_at_once() {
    let redis = RedisServer::start();
    a_vanished_client_leaves_at_once(&Topology::split(&redis.url()).await).await;
}

#[tokio::test]
async fn all_in_one_a_vanished_client_leaves_at_once() {
    a_vanished_client_leaves_at_once(&Topology::all_in_one().await).await;
}
