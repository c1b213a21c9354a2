//! Mutual TLS: peers without a certificate from the cluster CA naming a current
//! member are refused and counted, in both directions.

use std::time::Duration;

use raft_core::NodeId;
use raft_transport::certs::DevCa;
use raft_transport::codec::{Preamble, StreamKind};
use raft_transport::tls::ALPN;
use raft_transport::{RefusalReason, Transport};

use crate::support::{
    Cluster, HANG_GUARD, assert_refused, config, eventually, heartbeat, message_within,
    next_message, raw_client,
};

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let mut cluster = Cluster::start(2, |_| {});
    let other = DevCa::generate("rogue CA").unwrap();
    // It even names a real member.
    let forged = other.member(NodeId(1), &[]).unwrap();
    let client = raw_client(Some(&forged), ALPN);
    assert_refused(&client, cluster.addr(2)).await;
    let stats = cluster.transport(2).stats();
    assert_eq!(stats.refused(RefusalReason::UntrustedCertificate), 1);
    assert_eq!(stats.refused_total(), 1);
    assert!(
        message_within(cluster.events(2), Duration::from_millis(200))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_member_id_outside_the_membership_is_refused() {
    let cluster = Cluster::start(2, |_| {});
    let stranger = cluster.pki.ca.member(NodeId(9), &[]).unwrap();
    assert_refused(&raw_client(Some(&stranger), ALPN), cluster.addr(2)).await;
    assert_eq!(
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::UnknownMember),
        1
    );
}

#[tokio::test]
async fn a_certificate_without_member_id_is_refused() {
    let cluster = Cluster::start(2, |_| {});
    let client = cluster.pki.ca.client("raftctl").unwrap();
    assert_refused(&raw_client(Some(&client), ALPN), cluster.addr(2)).await;
    assert_eq!(
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::NoMemberId),
        1
    );
}

#[tokio::test]
async fn no_certificate_is_refused() {
    let cluster = Cluster::start(2, |_| {});
    assert_refused(&raw_client(None, ALPN), cluster.addr(2)).await;
    eventually("the refusal is counted", || {
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::NoCertificate)
            == 1
    })
    .await;
    assert_eq!(cluster.transport(2).stats().refused_total(), 1);
}

#[tokio::test]
async fn another_protocol_is_refused() {
    let cluster = Cluster::start(2, |_| {});
    let member = &cluster.pki.members[&NodeId(1)];
    assert_refused(&raw_client(Some(member), b"h3"), cluster.addr(2)).await;
    eventually("the refusal is counted", || {
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::WrongProtocol)
            == 1
    })
    .await;
}

#[tokio::test]
async fn claiming_another_member_than_the_certificate_closes_the_connection() {
    let mut cluster = Cluster::start(3, |_| {});
    // Member 1's valid certificate, but the stream claims to come from member 3.
    let client = raw_client(Some(&cluster.pki.members[&NodeId(1)]), ALPN);
    let connection = client
        .connect(cluster.addr(2), "member.raft")
        .unwrap()
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let mut bytes = bytes::BytesMut::new();
    Preamble {
        kind: StreamKind::Control,
        sender: NodeId(3),
    }
    .encode(&mut bytes);
    raft_transport::codec::encode_message(&heartbeat(3, 2, 1), &mut bytes).unwrap();
    stream.write_all(&bytes).await.unwrap();
    tokio::time::timeout(HANG_GUARD, connection.closed())
        .await
        .unwrap();
    assert_eq!(
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::ClaimMismatch),
        1
    );
    assert!(
        message_within(cluster.events(2), Duration::from_millis(200))
            .await
            .is_none()
    );
    // The real members still talk.
    cluster.transport(3).send(heartbeat(3, 2, 5)).unwrap();
    assert_eq!(next_message(cluster.events(2)).await, heartbeat(3, 2, 5));
}

#[tokio::test]
async fn the_dialer_refuses_a_server_that_is_not_the_member_it_dialed() {
    let cluster = Cluster::start(1, |_| {});
    // An impostor with a valid certificate for member 3 listens where member 2 should.
    let impostor_pair = cluster.pki.ca.member(NodeId(3), &[]).unwrap();
    let impostor_identity = raft_transport::TlsIdentity::from_pem(
        &cluster.pki.ca.cert_pem(),
        &impostor_pair.cert_pem,
        &impostor_pair.key_pem,
    )
    .unwrap();
    let mut impostor_config = config(&cluster.pki, NodeId(1));
    impostor_config.id = NodeId(3);
    impostor_config.tls = impostor_identity;
    let (impostor, mut impostor_events) = Transport::start(impostor_config).unwrap();
    cluster
        .transport(1)
        .add_member(NodeId(2), impostor.local_addr().unwrap());
    cluster.transport(1).send(heartbeat(1, 2, 1)).unwrap();
    eventually("the dialer counts the wrong member", || {
        cluster
            .transport(1)
            .stats()
            .refused(RefusalReason::WrongMember)
            >= 1
    })
    .await;
    assert!(
        message_within(&mut impostor_events, Duration::from_millis(200))
            .await
            .is_none()
    );
    assert!(!cluster.transport(1).stats().peers[&NodeId(2)].connected);
}

#[tokio::test]
async fn a_removed_member_is_refused_afterwards() {
    let mut cluster = Cluster::start(3, |_| {});
    cluster.transport(3).send(heartbeat(3, 2, 1)).unwrap();
    next_message(cluster.events(2)).await;
    cluster.transport(2).remove_member(NodeId(3));
    let member_three = &cluster.pki.members[&NodeId(3)];
    assert_refused(&raw_client(Some(member_three), ALPN), cluster.addr(2)).await;
    assert!(
        cluster
            .transport(2)
            .stats()
            .refused(RefusalReason::UnknownMember)
            >= 1
    );
}

#[tokio::test]
async fn a_member_whose_own_certificate_is_not_from_the_ca_does_not_start() {
    let pki = crate::support::Pki::new(&[1]);
    let other = DevCa::generate("another CA").unwrap();
    let foreign = other.member(NodeId(1), &[]).unwrap();
    let identity = raft_transport::TlsIdentity::from_pem(
        &pki.ca.cert_pem(),
        &foreign.cert_pem,
        &foreign.key_pem,
    )
    .unwrap();
    let mut config = config(&pki, NodeId(1));
    config.tls = identity;
    assert!(matches!(
        Transport::start(config),
        Err(raft_transport::TransportError::OwnCertificateUntrusted { .. })
    ));
    // And a certificate naming another member than the configured id.
    let mut config = crate::support::config(&pki, NodeId(1));
    config.id = NodeId(2);
    assert!(matches!(
        Transport::start(config),
        Err(raft_transport::TransportError::OwnCertificateId {
            expected: NodeId(2),
            found: Some(NodeId(1))
        })
    ));
}
