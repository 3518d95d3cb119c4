// The Go peer: the least a Go reverse proxy does for the gateway's URL shape, beside which the
// benchmark suite measures the gateway (issue 18). Standard library only.
//
//	GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/<cluster>/proxy/<path>  ->  <member>/<path>
//
// TLS on both legs; the member's bearer token replaces any Authorization the client sent; answers
// are flushed as they arrive (FlushInterval -1), as the gateway streams them. By default one pooled
// http.Transport serves every request; with -transport-per-request each request builds its own
// transport, so pays a TCP connect and a TLS handshake to the member, as cluster-gateway does.
//
// Run: go-peer -listen 127.0.0.1:PORT -cert CRT -key KEY -member member.json [-cluster m1] [-transport-per-request]
// member.json holds {"url": ..., "token": ..., "ca": PEM} (what benchmarks/member.py writes).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
)

const proxyPrefix = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/"

type member struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	CA    string `json:"ca"`
}

func newTransport(roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024, // the benchmark's 64 clients (and 1,000 watches) each keep theirs
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// memberPath is the member path of a proxy URL path for this cluster, and whether it is one.
func memberPath(path, cluster string) (string, bool) {
	prefix := proxyPrefix + cluster + "/proxy"
	if !strings.HasPrefix(path, prefix) {
		return "", false
	}
	rest := path[len(prefix):]
	if rest != "" && !strings.HasPrefix(rest, "/") {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	memberFile := flag.String("member", "", "member.json: url, token, ca")
	cluster := flag.String("cluster", "m1", "the one cluster name served")
	perRequest := flag.Bool("transport-per-request", false, "a new transport (connection, TLS handshake) for every request")
	version := flag.Bool("version", false, "print the Go version it was built with and exit")
	flag.Parse()
	if *version {
		fmt.Println(runtime.Version())
		return
	}

	raw, err := os.ReadFile(*memberFile)
	if err != nil {
		log.Fatalf("go-peer: %v", err)
	}
	var m member
	if err := json.Unmarshal(raw, &m); err != nil {
		log.Fatalf("go-peer: %s: %v", *memberFile, err)
	}
	target, err := url.Parse(m.URL)
	if err != nil {
		log.Fatalf("go-peer: member url: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(m.CA)) {
		log.Fatalf("go-peer: no CA certificate in %s", *memberFile)
	}
	bearer := "Bearer " + m.Token
	director := func(r *http.Request) {
		r.URL.Scheme, r.URL.Host, r.Host = target.Scheme, target.Host, target.Host
		r.Header.Set("Authorization", bearer)
	}
	pooled := newTransport(roots)
	proxyWith := func(t http.RoundTripper) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{Director: director, Transport: t, FlushInterval: -1}
	}
	shared := proxyWith(pooled)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ok := memberPath(r.URL.Path, *cluster)
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		r.URL.Path, r.URL.RawPath = path, ""
		if !*perRequest {
			shared.ServeHTTP(w, r)
			return
		}
		own := newTransport(roots)
		defer own.CloseIdleConnections() // the answer is copied: its connection goes with the transport
		proxyWith(own).ServeHTTP(w, r)
	})
	server := &http.Server{
		Addr:              *listen,
		Handler:           handler,
		ReadHeaderTimeout: 30 * time.Second,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1, as the clients speak
		ErrorLog:          log.New(os.Stderr, "go-peer: ", 0),
	}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
