//! The marketplace: only users who have run an IP rate and review it, its
//! vendor replies, and the catalog searches and sorts by what users did.

use crate::common::*;
use accelhub_domain::{Role, VersionStatus};
use bytes::Bytes;

fn status(e: &accelhub_client::ClientError) -> Option<u16> {
    e.status().map(|s| s.as_u16())
}

#[tokio::test]
async fn users_who_ran_an_ip_rate_it_and_its_vendor_replies() {
    let server = Server::start();
    let acme = server.account("acme", Role::Vendor).await;
    let globex = server.account("globex", Role::Vendor).await;
    let bob = server.account("bob", Role::User).await;
    let carol = server.account("carol", Role::User).await;
    for ip in ["echo", "revcomp"] {
        let v = publish(&acme, &ips_dir().join(ip)).await;
        assert_eq!(v.status, VersionStatus::Verified);
    }

    // Not before using it, not as a vendor, not an IP that does not exist.
    let e = bob.review("acme/echo", 5, "great").await.unwrap_err();
    assert_eq!(status(&e), Some(403), "{e}");
    assert!(e.to_string().contains("deploy it and call it first"), "{e}");
    let e = acme
        .review("acme/echo", 5, "mine is great")
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403), "{e}");
    let e = bob.review("acme/nothing", 5, "").await.unwrap_err();
    assert_eq!(status(&e), Some(404), "{e}");

    // After a call: rate, then change one's mind (one review per user).
    for user in [&bob, &carol] {
        user.deploy("acme/echo", None).await.unwrap();
        user.invoke("acme/echo", &Default::default(), Bytes::from_static(b"hi"))
            .await
            .unwrap();
    }
    let e = bob.review("acme/echo", 6, "").await.unwrap_err();
    assert_eq!(status(&e), Some(400), "{e}");
    let first = bob.review("acme/echo", 3, "ok").await.unwrap();
    let again = bob
        .review("acme/echo", 5, "  fast and cheap ")
        .await
        .unwrap();
    assert_eq!(again.id, first.id, "a second review replaces the first");
    assert_eq!((again.stars, again.text.as_str()), (5, "fast and cheap"));
    let carols = carol
        .review("acme/echo", 4, "does what it says")
        .await
        .unwrap();
    assert_eq!(carols.author, "carol");

    // The vendor replies; nobody else may, and only to its IP's reviews.
    let e = globex
        .reply("acme/echo", carols.id, "try ours")
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403), "{e}");
    let e = bob
        .reply("acme/echo", carols.id, "agreed")
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403), "{e}");
    let e = acme
        .reply("acme/revcomp", carols.id, "thanks")
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(404), "a review of another IP: {e}");
    let e = acme.reply("acme/echo", carols.id, "  ").await.unwrap_err();
    assert_eq!(status(&e), Some(400), "{e}");
    let replied = acme
        .reply("acme/echo", carols.id, "thanks, Carol")
        .await
        .unwrap();
    assert_eq!(replied.reply.unwrap().text, "thanks, Carol");

    // Everyone sees the reviews, the average and the use.
    let d = globex.ip("acme/echo").await.unwrap();
    assert_eq!(d.reviews.len(), 2);
    assert_eq!(d.stats.rating.count, 2);
    assert_eq!(d.stats.rating.average, Some(4.5));
    assert_eq!((d.stats.uses, d.stats.users), (2, 2));
    assert_eq!(
        d.reviews
            .iter()
            .find(|r| r.author == "carol")
            .unwrap()
            .reply
            .as_ref()
            .unwrap()
            .text,
        "thanks, Carol"
    );
    let out = server.cli(&server.admin_token, &["ip", "show", "acme/echo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rated 4.5 (2)"), "{text}");
    assert!(text.contains("vendor reply: thanks, Carol"), "{text}");

    // The catalog: filters and orders.
    let names = |v: Vec<accelhub_domain::CatalogEntry>| -> Vec<String> {
        v.into_iter().map(|e| e.ip).collect()
    };
    let by_rating = bob
        .search(None, None, None, Some("acme"), Some("rating"))
        .await
        .unwrap();
    assert_eq!(by_rating[0].stats.rating.average, Some(4.5));
    assert_eq!(names(by_rating), ["acme/echo", "acme/revcomp"]);
    let by_usage = bob
        .search(None, None, None, None, Some("usage"))
        .await
        .unwrap();
    assert_eq!(by_usage[0].ip, "acme/echo", "the only IP used");
    assert_eq!(
        names(
            bob.search(None, Some("genomics"), Some("wasm"), None, None)
                .await
                .unwrap()
        ),
        ["acme/revcomp"]
    );
    assert_eq!(
        names(
            bob.search(Some("reverse DNA"), None, None, None, None)
                .await
                .unwrap()
        ),
        ["acme/revcomp"]
    );
    assert!(bob
        .search(None, None, Some("opencl"), Some("acme"), None)
        .await
        .unwrap()
        .is_empty());
    let e = bob
        .search(None, None, None, None, Some("stars"))
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(400), "{e}");
}
