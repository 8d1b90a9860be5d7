//! Admission of connections: shares per address, idle first, authenticated work never.

use super::*;

fn limits(max: usize, per_address: usize) -> HttpLimits {
    HttpLimits { max_connections: max, max_connections_per_address: per_address, ..HttpLimits::default() }
}

fn admitted(connections: &Connections, address: [u8; 4]) -> Arc<Connection> {
    match connections.admit(IpAddr::from(address)) {
        Admission::In(connection) => connection,
        Admission::Refused => panic!("refused"),
        Admission::Full => panic!("full"),
    }
}

#[test]
fn one_address_holds_its_share_and_makes_room_from_its_own_idle_connections() {
    let connections = Connections::new(limits(100, 2));
    let first = admitted(&connections, [127, 0, 0, 2]);
    let second = admitted(&connections, [127, 0, 0, 2]);
    // Just opened: not yet idle, so nothing of its own can go.
    assert!(matches!(connections.admit(IpAddr::from([127, 0, 0, 2])), Admission::Refused));
    first.enter(Phase::Idle);
    second.enter(Phase::Receiving);
    // Its oldest idle connection goes for the third.
    let third = admitted(&connections, [127, 0, 0, 2]);
    assert!(first.close.is_cancelled() && !second.close.is_cancelled());
    // Nothing of its own idle: refused, while another address is let in.
    third.enter(Phase::Receiving);
    assert!(matches!(connections.admit(IpAddr::from([127, 0, 0, 2])), Admission::Refused));
    admitted(&connections, [127, 0, 0, 3]);
}

#[test]
fn near_the_cap_idle_goes_first_then_unauthenticated_bodies_and_authenticated_work_never() {
    let connections = Connections::new(limits(8, 8));
    let all: Vec<_> = (0..7).map(|_| admitted(&connections, [127, 0, 0, 2])).collect();
    for (i, connection) in all.iter().enumerate() {
        connection.enter(if i < 3 { Phase::Working } else { Phase::Receiving });
    }
    // 7 of 8 open, none idle: the eighth is let in without closing anything.
    let eighth = admitted(&connections, [127, 0, 0, 3]);
    eighth.enter(Phase::Idle);
    assert!(all.iter().all(|c| !c.close.is_cancelled()));
    // At the cap: the idle one goes first, then the oldest unauthenticated body.
    admitted(&connections, [127, 0, 0, 4]).enter(Phase::Working);
    assert!(eighth.close.is_cancelled());
    admitted(&connections, [127, 0, 0, 4]).enter(Phase::Working);
    let cut: Vec<usize> = (0..7).filter(|&i| all[i].close.is_cancelled()).collect();
    assert_eq!(cut, [3], "the oldest receiving connection, not authenticated work");
    for connection in &all[4..] {
        connection.enter(Phase::Working);
    }
    assert!(matches!(connections.admit(IpAddr::from([127, 0, 0, 5])), Admission::Full));
    connections.ended(all[0].id);
    admitted(&connections, [127, 0, 0, 5]);
}
