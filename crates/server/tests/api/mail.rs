use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use waymark_engine::mail::{MailError, Mailer};

use crate::smtp::FakeSmtp;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn sends_plain_text_mail_over_smtp() {
    let fake = FakeSmtp::start().await;
    let mailer = Mailer::from_url(&fake.url(), "Waymark <waymark@example.test>").unwrap();

    mailer
        .send(
            "alice@example.test",
            "Plan ready",
            "Hello Alice,\n.a line starting with a dot\n..and one with two\nBye",
        )
        .await
        .unwrap();
    mailer
        .send(
            "Bob <bob@example.test>",
            "Überprüfung – fertig",
            "Die Überprüfung ist fertig – danke!\n.Punkt am Anfang\n",
        )
        .await
        .unwrap();

    let mails = fake.wait_for(2, WAIT).await;
    assert_eq!(mails.len(), 2);

    let first = &mails[0];
    assert_eq!(first.from, "waymark@example.test");
    assert_eq!(first.to, ["alice@example.test"]);
    assert_eq!(first.subject(), "Plan ready");
    assert!(
        first
            .body()
            .contains("Hello Alice,\n.a line starting with a dot\n..and one with two\nBye"),
        "{}",
        first.body()
    );
    assert!(
        first
            .header("From")
            .unwrap()
            .contains("waymark@example.test")
    );
    assert!(
        first
            .header("Content-Type")
            .unwrap()
            .to_ascii_lowercase()
            .starts_with("text/plain; charset=utf-8")
    );

    let second = &mails[1];
    assert_eq!(second.from, "waymark@example.test");
    assert_eq!(second.to, ["bob@example.test"]);
    assert_eq!(second.subject(), "Überprüfung – fertig");
    assert!(
        second
            .body()
            .contains("Die Überprüfung ist fertig – danke!\n.Punkt am Anfang"),
        "{}",
        second.body()
    );
}

#[tokio::test]
async fn serves_concurrent_connections() {
    let fake = FakeSmtp::start().await;
    let mailer = Mailer::from_url(&fake.url(), "waymark@example.test").unwrap();
    let sends = (0..5).map(|i| {
        let mailer = mailer.clone();
        async move {
            mailer
                .send(&format!("user{i}@example.test"), &format!("n{i}"), "hi")
                .await
        }
    });
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    let mut subjects: Vec<String> = fake
        .wait_for(5, WAIT)
        .await
        .iter()
        .map(|m| m.subject())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["n0", "n1", "n2", "n3", "n4"]);
}

#[tokio::test]
async fn fake_smtp_speaks_the_dialogue() {
    let fake = FakeSmtp::start().await;
    let (read, mut write) = TcpStream::connect(fake.addr()).await.unwrap().into_split();
    let mut lines = BufReader::new(read).lines();
    let mut expect = async |send: &str, code: &str| {
        if !send.is_empty() {
            write.write_all(send.as_bytes()).await.unwrap();
        }
        loop {
            let line = lines.next_line().await.unwrap().expect("a reply");
            assert!(line.starts_with(code), "{send:?} got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("", "220").await;
    expect("MAIL FROM:<a@example.test>\r\n", "503").await;
    expect("HELO client.test\r\n", "250").await;
    expect("EHLO client.test\r\n", "250").await;
    expect("NOOP\r\n", "250").await;
    expect("VRFY someone\r\n", "502").await;
    expect("MAIL FROM:<dropped@example.test>\r\n", "250").await;
    expect("RSET\r\n", "250").await;
    expect("RCPT TO:<x@example.test>\r\n", "503").await;
    expect("mail from:<a@example.test> BODY=8BITMIME\r\n", "250").await;
    expect("RCPT TO:<b@example.test>\r\n", "250").await;
    expect("RCPT TO:<c@example.test>\r\n", "250").await;
    expect("DATA\r\n", "354").await;
    expect("Subject: hi\r\n\r\n..dot\r\nplain\r\n.\r\n", "250").await;
    expect("QUIT\r\n", "221").await;

    let mails = fake.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "a@example.test");
    assert_eq!(mails[0].to, ["b@example.test", "c@example.test"]);
    assert_eq!(mails[0].subject(), "hi");
    assert_eq!(mails[0].body(), ".dot\nplain\n");
}

#[tokio::test]
async fn rejects_bad_settings_and_reports_send_failures() {
    let err = Mailer::from_url("http://x", "waymark@example.test").unwrap_err();
    assert!(matches!(err, MailError::InvalidUrl(_)), "{err:?}");
    assert!(err.to_string().contains("smtp://host:port"), "{err}");

    let err = Mailer::from_url("smtp://127.0.0.1:2525", "not an address").unwrap_err();
    assert!(matches!(err, MailError::InvalidFrom { .. }), "{err:?}");

    let fake = FakeSmtp::start().await;
    let mailer = Mailer::from_url(&fake.url(), "waymark@example.test").unwrap();
    let err = mailer.send("nobody", "s", "b").await.unwrap_err();
    assert!(matches!(err, MailError::InvalidRecipient { .. }), "{err:?}");

    // Nothing listens on a port just released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer =
        Mailer::from_url(&format!("smtp://127.0.0.1:{port}"), "waymark@example.test").unwrap();
    let err = mailer.send("a@example.test", "s", "b").await.unwrap_err();
    assert!(matches!(err, MailError::Send(_)), "{err:?}");
}

#[tokio::test]
async fn decodes_either_transfer_encoding() {
    let fake = FakeSmtp::start().await;
    let mailer = Mailer::from_url(&fake.url(), "waymark@example.test").unwrap();
    // Mostly ASCII goes quoted-printable, mostly not goes base64.
    let texts = [
        "Überprüfung – fertig, alles in Ordnung.",
        "€€€ ÄÖÜ äöü ß — «Grüße» ☃☃☃",
    ];
    for text in texts {
        mailer.send("a@example.test", text, text).await.unwrap();
    }
    let mails = fake.wait_for(2, WAIT).await;
    let encodings: Vec<String> = mails
        .iter()
        .map(|m| m.header("Content-Transfer-Encoding").unwrap())
        .collect();
    assert_eq!(encodings, ["quoted-printable", "base64"]);
    for (mail, text) in mails.iter().zip(texts) {
        assert_eq!(mail.subject(), text);
        assert_eq!(mail.body().trim_end(), text);
    }
}
