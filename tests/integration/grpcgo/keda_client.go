// Command keda_client is the grpc-go reference client of prescale's integration tests: it reaches prescale
// the way KEDA's external scaler does (kedacore/keda pkg/scalers/external_scaler.go, its connection pool's
// buildGRPCConnection, and pkg/util/tls_config.go for the credentials), with grpc-go itself, so that the
// transport (HTTP/2 framing, flow control, TLS, ALPN, status trailers) is the one KEDA runs.
//
//	keda_client -addr 127.0.0.1:PORT [-enable-tls] [-ca FILE] [-cert FILE -key FILE] [-unsafe-ssl]
//	            [-name N -namespace NS -metadata '{"query": ...}'] [-calls spec,metrics,active,stream]
//	            [-metric NAME] [-stream-messages 1] [-timeout 30s] [-enforce-alpn=true]
//	            [-max-tls-version 1.2] [-repeat N -concurrency C]
//
// Built by tests/integration/grpcgo_client.py in GOPATH mode against Debian's packages (golang-go,
// golang-google-grpc-dev; GO111MODULE=off GOPATH=/usr/share/gocode:<repo>/tests/gopath), offline: no
// go.mod on purpose.
// -repeat/-concurrency make N more GetMetrics calls over the one connection and report the rate and
// latencies: the grpc-go reference for performance work.
//
// Credentials as KEDA builds them: TLS when enableTLS, a client certificate or caCert is given, with
// credentials.NewTLS over a tls.Config whose roots are the system pool plus caCert, TLS >= 1.2, and
// InsecureSkipVerify only for unsafeSsl; otherwise plaintext HTTP/2 (h2c). KEDA passes the PEM contents of
// its authentication parameters; this client reads them from files, which is the same bytes.
// grpc.NewClient and credentials/insecure are newer than Debian bookworm's grpc-go (1.33); grpc.Dial and
// grpc.WithInsecure are their 1.33 equivalents (both connect lazily, at the first call).
//
// ALPN: grpc-go 1.67 and later fail a TLS handshake in which the server selected no ALPN protocol
// ("missing selected ALPN property"), and KEDA ships those releases. 1.33 does not check, so this client
// does (-enforce-alpn, default on): a tls.Config.VerifyConnection that refuses a handshake without "h2".
// credentials.NewTLS offers "h2" itself (RFC 7540 section 3.3; gRPC over HTTP/2, PROTOCOL-HTTP2.md).
//
// Messages: tests/gopath/src/externalscaler/wire.go encodes them by hand (it says why).
//
// Output: one JSON object on stdout. A failed call prints {"ok": false, "call", "code" (the canonical name,
// e.g. UNAVAILABLE), "message"} and exits 1; a usage or credentials error exits 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	es "externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

const service = "/externalscaler.ExternalScaler/"

// KEDA's connection pool dials with this service config (round_robin over the resolved addresses).
const serviceConfig = `{"loadBalancingConfig": [{"round_robin":{}}]}`

// ---- output -------------------------------------------------------------------------------------------

// jsonFloat writes a double as JSON can carry it: the shortest decimal that reads back to the same
// double, and NaN or an infinity as a string (encoding/json refuses those).
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte(strconv.Quote(strconv.FormatFloat(v, 'g', -1, 64))), nil
	}
	return []byte(strconv.FormatFloat(v, 'g', -1, 64)), nil
}

type specJSON struct {
	MetricName      string    `json:"metricName"`
	TargetSize      int64     `json:"targetSize"`
	TargetSizeFloat jsonFloat `json:"targetSizeFloat"`
}

type valueJSON struct {
	MetricName       string    `json:"metricName"`
	MetricValue      int64     `json:"metricValue"`
	MetricValueFloat jsonFloat `json:"metricValueFloat"`
}

type tlsJSON struct {
	Version string `json:"version"`
	// NegotiatedProtocol is the ALPN protocol the server selected ("" when it selected none).
	NegotiatedProtocol string   `json:"alpn"`
	CipherSuite        string   `json:"cipher_suite"`
	ServerSubject      string   `json:"server_subject,omitempty"`
	ServerDNSNames     []string `json:"server_dns_names,omitempty"`
}

type loadJSON struct {
	Calls       int            `json:"calls"`
	Errors      map[string]int `json:"errors"`
	Concurrency int            `json:"concurrency"`
	ElapsedS    jsonFloat      `json:"elapsed_s"`
	PerSecond   jsonFloat      `json:"calls_per_s"`
	P50Ms       jsonFloat      `json:"p50_ms"`
	P99Ms       jsonFloat      `json:"p99_ms"`
	MaxMs       jsonFloat      `json:"max_ms"`
}

type result struct {
	OK       bool        `json:"ok"`
	GrpcGo   string      `json:"grpc_go"`
	Address  string      `json:"address"`
	Security string      `json:"security"` // "insecure" (h2c) or "tls"
	TLS      *tlsJSON    `json:"tls,omitempty"`
	Spec     []specJSON  `json:"spec,omitempty"`
	Metrics  []valueJSON `json:"metrics,omitempty"`
	Active   *bool       `json:"active,omitempty"`
	Stream   []bool      `json:"stream,omitempty"`
	Load     *loadJSON   `json:"load,omitempty"`
	// On failure: the call that failed and its gRPC status.
	Call    string `json:"call,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// The canonical names of the status codes (grpc/doc/statuscodes.md), as grpcio's StatusCode names them;
// grpc-go's codes.Code.String() spells them in CamelCase.
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE_" + strconv.Itoa(int(c))
}

func emit(r *result) {
	out, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keda_client: json: %v\n", err)
		os.Exit(2)
	}
	fmt.Println(string(out))
}

func usage(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "keda_client: "+format+"\n", a...)
	os.Exit(2)
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func peerTLS(p *peer.Peer) *tlsJSON {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	st := info.State
	t := &tlsJSON{Version: tlsVersionName(st.Version), NegotiatedProtocol: st.NegotiatedProtocol,
		CipherSuite: tls.CipherSuiteName(st.CipherSuite)}
	if len(st.PeerCertificates) > 0 {
		t.ServerSubject = st.PeerCertificates[0].Subject.String()
		t.ServerDNSNames = st.PeerCertificates[0].DNSNames
	}
	return t
}

// ---- credentials, as KEDA builds them -------------------------------------------------------------------

func readFile(what, path string) []byte {
	b, err := ioutil.ReadFile(path)
	if err != nil {
		usage("%s: %v", what, err)
	}
	return b
}

// tlsConfig follows KEDA's util.NewTLSConfig: system roots plus caCert, TLS >= 1.2 (KEDA's default
// KEDA_HTTP_MIN_TLS_VERSION), the client certificate when both halves are given, InsecureSkipVerify for
// unsafeSsl only.
func tlsConfig(caFile, certFile, keyFile string, unsafeSsl, enforceALPN bool, maxVersion uint16) *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: maxVersion, RootCAs: roots,
		InsecureSkipVerify: unsafeSsl}
	if certFile != "" && keyFile != "" {
		pair, err := tls.X509KeyPair(readFile("-cert", certFile), readFile("-key", keyFile))
		if err != nil {
			usage("client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if caFile != "" && !roots.AppendCertsFromPEM(readFile("-ca", caFile)) {
		usage("-ca %s: no PEM certificate in it", caFile)
	}
	if enforceALPN {
		// What grpc-go >= 1.67 does after the handshake (credentials/tls.go, ClientHandshake).
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != "h2" {
				return fmt.Errorf("missing selected ALPN property: the server selected %q, not h2 "+
					"(grpc-go >= 1.67 refuses it)", cs.NegotiatedProtocol)
			}
			return nil
		}
	}
	return cfg
}

// ---- calls --------------------------------------------------------------------------------------------

type client struct {
	conn    *grpc.ClientConn
	timeout time.Duration
	peer    peer.Peer
	res     *result
}

// fail prints the status of a failed call (with what the handshake showed, if it got that far) and exits 1.
func (c *client) fail(call string, err error) {
	st := status.Convert(err)
	c.res.OK, c.res.Call, c.res.Code, c.res.Message = false, call, codeName(st.Code()), st.Message()
	if c.res.TLS == nil {
		c.res.TLS = peerTLS(&c.peer)
	}
	emit(c.res)
	fmt.Fprintf(os.Stderr, "keda_client: %s: %s: %s\n", call, c.res.Code, c.res.Message)
	os.Exit(1)
}

func (c *client) unary(method string, req, resp es.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err := c.conn.Invoke(ctx, service+method, req, resp, grpc.Peer(&c.peer))
	if err == nil && c.res.TLS == nil {
		c.res.TLS = peerTLS(&c.peer)
	}
	return err
}

// streamIsActive opens StreamIsActive as KEDA's push scaler does, takes n messages and cancels it.
func (c *client) streamIsActive(ref *es.ScaledObjectRef, n int) ([]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: "StreamIsActive", ServerStreams: true}
	s, err := c.conn.NewStream(ctx, desc, service+"StreamIsActive", grpc.Peer(&c.peer))
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(ref); err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	var got []bool
	for len(got) < n {
		var m es.IsActiveResponse
		if err := s.RecvMsg(&m); err != nil {
			return got, err
		}
		got = append(got, m.Result)
	}
	if c.res.TLS == nil {
		if p, ok := peer.FromContext(s.Context()); ok {
			c.res.TLS = peerTLS(p)
		}
	}
	return got, nil
}

// load makes `total` calls of one method from `conc` goroutines over the one connection (KEDA shares a
// ClientConn per scaler address), for the performance reference: latency quantiles and the rate.
func (c *client) load(method string, req func() es.Message, resp func() es.Message, total, conc int) *loadJSON {
	lat := make([]time.Duration, 0, total)
	errs := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, total)
	for i := 0; i < total; i++ {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
				t0 := time.Now()
				err := c.conn.Invoke(ctx, service+method, req(), resp())
				d := time.Since(t0)
				cancel()
				mu.Lock()
				if err != nil {
					errs[codeName(status.Code(err))+": "+status.Convert(err).Message()]++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) jsonFloat {
		if len(lat) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		if i < 0 {
			i = 0
		}
		return jsonFloat(float64(lat[i]) / 1e6)
	}
	return &loadJSON{Calls: total, Errors: errs, Concurrency: conc, ElapsedS: jsonFloat(elapsed.Seconds()),
		PerSecond: jsonFloat(float64(total) / elapsed.Seconds()), P50Ms: q(0.5), P99Ms: q(0.99), MaxMs: q(1)}
}

func main() {
	addr := flag.String("addr", "", "scalerAddress, host:port")
	enableTLS := flag.Bool("enable-tls", false, "enableTLS: TLS with the system CAs (and -ca if given)")
	caFile := flag.String("ca", "", "caCert: PEM file of a CA to trust besides the system's (implies TLS)")
	certFile := flag.String("cert", "", "tlsClientCert: PEM client certificate (with -key; implies TLS)")
	keyFile := flag.String("key", "", "tlsClientKey: PEM private key of -cert")
	unsafeSsl := flag.Bool("unsafe-ssl", false, "unsafeSsl: do not verify the server's certificate")
	maxTLS := flag.String("max-tls-version", "", "1.2 to stop at TLS 1.2 (not a KEDA setting: for the TLS 1.2 path)")
	enforceALPN := flag.Bool("enforce-alpn", true, "refuse a TLS server that selects no ALPN h2, as grpc-go >= 1.67")
	name := flag.String("name", "web", "ScaledObjectRef.name")
	namespace := flag.String("namespace", "default", "ScaledObjectRef.namespace")
	metaJSON := flag.String("metadata", "{}", "ScaledObjectRef.scalerMetadata as a JSON object of strings")
	calls := flag.String("calls", "spec,metrics,active,stream", "calls to make, in order: spec, metrics, active, stream")
	metricName := flag.String("metric", "", "GetMetrics' metricName (default: GetMetricSpec's first name, else prescale)")
	streamN := flag.Int("stream-messages", 1, "StreamIsActive messages to wait for")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	repeat := flag.Int("repeat", 0, "after the calls, this many more GetMetrics calls for a rate and latencies")
	conc := flag.Int("concurrency", 1, "goroutines making the -repeat calls over the one connection")
	flag.Parse()
	if *addr == "" || flag.NArg() > 0 {
		usage("-addr host:port is required (and no positional arguments)")
	}
	if (*certFile == "") != (*keyFile == "") {
		usage("-cert and -key go together")
	}
	if *repeat < 0 || *conc < 1 || *streamN < 1 {
		usage("-repeat >= 0, -concurrency >= 1 and -stream-messages >= 1")
	}
	maxVersion := uint16(0) // crypto/tls's default: TLS 1.3
	switch *maxTLS {
	case "":
	case "1.2":
		maxVersion = tls.VersionTLS12
	case "1.3":
		maxVersion = tls.VersionTLS13
	default:
		usage("-max-tls-version: 1.2 or 1.3, not %q", *maxTLS)
	}
	meta := map[string]string{}
	if err := json.Unmarshal([]byte(*metaJSON), &meta); err != nil {
		usage("-metadata: %v", err)
	}

	res := &result{OK: true, GrpcGo: grpc.Version, Address: *addr, Security: "insecure"}
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(serviceConfig)}
	// KEDA's rule: TLS when enableTLS, a client certificate or a CA is configured.
	if *enableTLS || *certFile != "" || *caFile != "" {
		res.Security = "tls"
		creds := credentials.NewTLS(tlsConfig(*caFile, *certFile, *keyFile, *unsafeSsl, *enforceALPN, maxVersion))
		opts = append(opts, grpc.WithTransportCredentials(creds))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	conn, err := grpc.Dial(*addr, opts...)
	if err != nil {
		usage("dial %s: %v", *addr, err)
	}
	defer conn.Close()
	c := &client{conn: conn, timeout: *timeout, res: res}

	ref := &es.ScaledObjectRef{Name: *name, Namespace: *namespace, Metadata: meta}
	for _, call := range strings.Split(*calls, ",") {
		switch strings.TrimSpace(call) {
		case "spec":
			var r es.MetricList
			if err := c.unary("GetMetricSpec", ref, &r); err != nil {
				c.fail("GetMetricSpec", err)
			}
			res.Spec = []specJSON{}
			for _, m := range r.Items {
				res.Spec = append(res.Spec, specJSON{m.Name, m.Int, jsonFloat(m.Float)})
			}
		case "metrics":
			mn := *metricName
			if mn == "" && len(res.Spec) > 0 {
				mn = res.Spec[0].MetricName // KEDA asks for the name the spec gave
			}
			if mn == "" {
				mn = "prescale"
			}
			var r es.MetricList
			if err := c.unary("GetMetrics", &es.GetMetricsRequest{Ref: ref, MetricName: mn}, &r); err != nil {
				c.fail("GetMetrics", err)
			}
			res.Metrics = []valueJSON{}
			for _, m := range r.Items {
				res.Metrics = append(res.Metrics, valueJSON{m.Name, m.Int, jsonFloat(m.Float)})
			}
		case "active":
			var r es.IsActiveResponse
			if err := c.unary("IsActive", ref, &r); err != nil {
				c.fail("IsActive", err)
			}
			res.Active = &r.Result
		case "stream":
			got, err := c.streamIsActive(ref, *streamN)
			if err != nil {
				c.fail("StreamIsActive", err)
			}
			res.Stream = got
		case "":
		default:
			usage("-calls: unknown call %q (spec, metrics, active, stream)", call)
		}
	}
	if *repeat > 0 {
		mn := *metricName
		if mn == "" {
			mn = "prescale"
		}
		req := &es.GetMetricsRequest{Ref: ref, MetricName: mn}
		res.Load = c.load("GetMetrics", func() es.Message { return req },
			func() es.Message { return &es.MetricList{} }, *repeat, *conc)
		if len(res.Load.Errors) > 0 {
			res.OK = false
			emit(res)
			os.Exit(1)
		}
	}
	emit(res)
}
