
#[tokio::test]
async fn a_request_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = push_app(push_knobs(), hourly()).await;
    let addr = w.receiver.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /push/fal/b.00000 HTTP/1.1\r\nHost: x\r\nX-Fal-Webhook-")
        .await
        .unwrap();
    // The receiver serves with a 5 s request timeout: it must close the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}
