// A net/http server requiring client certificates, for the side-by-side comparison in
// benches/compare.sh: TLS 1.3 only, RequireAndVerifyClientCert against one CA, no session
// tickets, HTTP/1.1 and HTTP/2 (ALPN), answering every request with the same JSON document
// as the other servers of the comparison.
//
//	go build -o goserver . && ./goserver -addr 127.0.0.1:8443 -cert server.crt -key server.key -ca ca.crt
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

// The extension example's index document, as serde_json renders it.
const index = `{"actions":[],"discoveries":[],"eventListeners":[],"targetAttributes":[],"targetTypes":[]}`

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	certFile := flag.String("cert", "server.crt", "server certificate chain (PEM)")
	keyFile := flag.String("key", "server.key", "server private key (PEM)")
	caFile := flag.String("ca", "ca.crt", "CA certificates trusted for client certificates (PEM)")
	flag.Parse()

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("server certificate: %v", err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatalf("client CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("client CA: no certificate in %s", *caFile)
	}

	body := []byte(index)
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
		TLSConfig: &tls.Config{
			Certificates:           []tls.Certificate{cert},
			ClientCAs:              pool,
			ClientAuth:             tls.RequireAndVerifyClientCert,
			MinVersion:             tls.VersionTLS13,
			SessionTicketsDisabled: true,
			NextProtos:             []string{"h2", "http/1.1"},
		},
		// Failed handshakes (clients hanging up) would otherwise be logged one by one.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	log.Printf("goserver on https://%s", listener.Addr())
	log.Fatal(server.ServeTLS(listener, "", ""))
}
