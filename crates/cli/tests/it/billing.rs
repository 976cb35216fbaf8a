//! Plans, quotas, spending limits and invoices over real calls: a trial,
//! per-call and per-byte pricing, a capped monthly plan (429 past its
//! calls), a spending limit (402), and the month's invoice, the vendor's
//! statement after the platform's share and the operator's totals.

use crate::common::*;
use accelhub_domain::{Money, Role, VersionStatus};
use bytes::Bytes;

const PRICING: &str = r#"[pricing]
per_call = 0.0001
per_gb = 1000
trial_calls = 2
[[pricing.plan]]
name = "capped"
monthly = 1
included_calls = 3
[[pricing.plan]]
name = "pro"
monthly = 5
included_calls = 1
overage = 0.5
[[pricing.plan]]
name = "dedicated"
per_device_hour = 3600
"#;

fn status(e: &accelhub_client::ClientError) -> Option<u16> {
    e.status().map(|s| s.as_u16())
}

fn item(inv: &accelhub_domain::billing::Invoice, plan: &str, item: &str) -> (u64, Money) {
    inv.lines
        .iter()
        .find(|l| l.plan == plan && l.item == item)
        .map(|l| (l.quantity, l.amount))
        .unwrap_or((0, Money::ZERO))
}

#[tokio::test]
async fn plans_quotas_limits_and_invoices() {
    let server = Server::start();
    let acme = server.account("acme", Role::Vendor).await;
    let bob = server.account("bob", Role::User).await;
    let carol = server.account("carol", Role::User).await;
    let dir = package("echo", |m| {
        m.replace("[pricing]\nper_call = 0.0001\n", PRICING)
    });
    let v = publish(&acme, dir.path()).await;
    assert_eq!(v.status, VersionStatus::Verified, "{:#?}", v.report);
    let ten = Bytes::from_static(b"0123456789");
    let call = |c: &accelhub_client::Client| {
        let c = c.clone();
        let ten = ten.clone();
        async move { c.invoke("acme/echo", &Default::default(), ten).await }
    };

    // Per call: two free trial calls, then 0.0001 a call plus 1000 per GB
    // (0.000001 a byte).
    bob.deploy("acme/echo", None).await.unwrap();
    for _ in 0..4 {
        call(&bob).await.unwrap();
    }
    let inv = bob.invoice(None).await.unwrap();
    assert_eq!(inv.view, "user");
    assert_eq!(item(&inv, "per-call", "trial calls"), (2, Money::ZERO));
    assert_eq!(item(&inv, "per-call", "calls"), (2, Money(200)));
    assert_eq!(item(&inv, "per-call", "input bytes"), (20, Money(20)));
    assert_eq!(inv.total, Money(220));

    // A capped monthly plan: its fee, three calls, then 429.
    let e = bob.subscribe("acme/echo", "gold").await.unwrap_err();
    assert_eq!(status(&e), Some(400), "{e}");
    assert!(e.to_string().contains("per-call, capped, pro"), "{e}");
    let e = acme.subscribe("acme/echo", "capped").await.unwrap_err();
    assert_eq!(status(&e), Some(403), "{e}");
    bob.subscribe("acme/echo", "capped").await.unwrap();
    for _ in 0..3 {
        call(&bob).await.unwrap();
    }
    let e = call(&bob).await.unwrap_err();
    assert_eq!(status(&e), Some(429), "{e}");
    assert!(e.to_string().contains("includes 3 calls a month"), "{e}");
    let inv = bob.invoice(None).await.unwrap();
    assert_eq!(item(&inv, "capped", "monthly fee"), (1, Money(1_000_000)));
    assert_eq!(item(&inv, "capped", "included calls"), (3, Money::ZERO));
    assert_eq!(inv.total, Money(1_000_220));
    // Back to paying per call: no quota.
    bob.subscribe("acme/echo", "per-call").await.unwrap();
    call(&bob).await.unwrap();
    assert_eq!(bob.invoice(None).await.unwrap().total, Money(1_000_330));
    assert_eq!(bob.subscriptions().await.unwrap().len(), 2);

    // A dedicated deployment, by the device-hour: the hours its replicas
    // were held (one, kept by --min 1), metered into usage records.
    let dave = server.account("dave", Role::User).await;
    dave.subscribe("acme/echo", "dedicated").await.unwrap();
    let scaling = accelhub_domain::Scaling {
        min: 1,
        max: 1,
        ..Default::default()
    };
    dave.deploy_with("acme/echo", None, Some(scaling))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    while dave.deployment("acme/echo").await.unwrap().replicas != 1 {
        assert!(t.elapsed().as_secs() < 20, "the replica is never held");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let held_from = std::time::Instant::now();
    for _ in 0..3 {
        call(&dave).await.unwrap(); // calls cost nothing more
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // Removing the deployment meters it to the end.
    dave.undeploy("acme/echo").await.unwrap();
    let held = held_from.elapsed().as_micros() as u64;
    let inv = dave.invoice(None).await.unwrap();
    // 3600 an hour is 0.000001 a microsecond: the amount is the time.
    let (us, amount) = item(&inv, "dedicated", "replica microseconds");
    assert!(
        us >= 1_200_000 && us <= held + 2_000_000,
        "{us} µs held, {held} seen: {inv:?}"
    );
    assert_eq!(amount, Money(us as i64));
    assert_eq!(item(&inv, "dedicated", "calls").1, Money::ZERO);
    assert_eq!(inv.total, amount);
    assert_eq!(dave.invoice(None).await.unwrap(), inv, "metering stopped");
    let dave_total = inv.total;

    // A spending limit: the call that would pass it is refused with 402.
    carol.set_spending_limit(Some(Money(150))).await.unwrap();
    carol.deploy("acme/echo", None).await.unwrap();
    for _ in 0..3 {
        call(&carol).await.unwrap(); // two free, then 0.000110
    }
    let e = call(&carol).await.unwrap_err();
    assert_eq!(status(&e), Some(402), "{e}");
    assert!(
        e.to_string()
            .contains("over your monthly limit of 0.000150"),
        "{e}"
    );
    carol.set_spending_limit(None).await.unwrap();
    call(&carol).await.unwrap();
    assert_eq!(carol.invoice(None).await.unwrap().total, Money(220));

    // The vendor's statement: revenue without users' names, the
    // platform's 20% (rounded down), the net.
    let st = acme.invoice(None).await.unwrap();
    assert_eq!(st.view, "vendor");
    let gross = Money(1_000_550 + dave_total.0);
    assert_eq!(st.total, gross);
    assert_eq!(st.platform_share_bps, 2000);
    assert_eq!(st.platform_cut, Money(gross.0 / 5));
    assert_eq!(st.vendor_net, Money(gross.0 - gross.0 / 5));
    assert_eq!(item(&st, "per-call", "trial calls").0, 4);
    assert_eq!(item(&st, "dedicated", "trial calls").0, 2);
    assert_eq!(item(&st, "dedicated", "replica microseconds").1, dave_total);
    let admin = server.admin();
    let ops = admin.invoice(None).await.unwrap();
    assert_eq!((ops.view.as_str(), ops.total), ("operator", gross));
    assert_eq!(ops.platform_cut, st.platform_cut);

    // Rating is a function of the records: asking again changes nothing;
    // another month has nothing; a bad month is a clear error.
    assert_eq!(acme.invoice(None).await.unwrap(), st);
    assert!(bob.invoice(Some("2020-01")).await.unwrap().lines.is_empty());
    let e = bob.invoice(Some("2026-13")).await.unwrap_err();
    assert_eq!(status(&e), Some(400), "{e}");

    let out = server.cli(&server.admin_token, &["invoice"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("platform share 20.00%: {}", st.platform_cut)),
        "{text}"
    );
}

/// Issue 14, defect 2: a subscription history is read whole when a month
/// is rated, so a user may not grow it without bound: ten plan changes an
/// IP a month, then 429 until the 1st.
#[tokio::test]
async fn plan_changes_are_bounded() {
    let server = Server::start();
    let acme = server.account("acme", Role::Vendor).await;
    let bob = server.account("bob", Role::User).await;
    let dir = package("echo", |m| {
        m.replace("[pricing]\nper_call = 0.0001\n", PRICING)
    });
    publish(&acme, dir.path()).await;
    for i in 0..10 {
        let plan = if i % 2 == 0 { "pro" } else { "per-call" };
        bob.subscribe("acme/echo", plan).await.unwrap();
    }
    let e = bob.subscribe("acme/echo", "pro").await.unwrap_err();
    assert_eq!(status(&e), Some(429), "{e}");
    assert!(e.to_string().contains("until the 1st"), "{e}");
    assert_eq!(bob.subscriptions().await.unwrap().len(), 10);
}
