//! A TCP forwarder on a fixed loopback port in front of `refrain serve`, whose target the test
//! moves when the server restarts on a new port: the bot keeps one orchestrator URL, as in a
//! real deployment, and sees the restart as connections refused and broken.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    pub url: String,
    target: Arc<Mutex<String>>,
}

impl Proxy {
    /// Forwards to `target` (`http://127.0.0.1:PORT`).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(Mutex::new(address(target)));
        let current = target.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let to = current.lock().unwrap().clone();
                std::thread::spawn(move || forward(client, &to));
            }
        });
        Proxy { url, target }
    }

    /// Sends new connections to `target` from now on.
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap() = address(target);
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

fn forward(client: TcpStream, to: &str) {
    let Ok(server) = TcpStream::connect(to) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        copy(&mut client_r, &mut server_w);
    });
    let (mut server_r, mut client_w) = (server, client);
    copy(&mut server_r, &mut client_w);
    let _ = upstream.join();
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
