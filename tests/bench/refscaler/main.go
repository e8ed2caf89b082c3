// Command refscaler is the grpc-go reference scaler of `make bench` (tests/bench/grpc_bench.py): a minimal
// KEDA external scaler written the usual way in Go, the peer prescale's RPC path is measured against
// (issue 11). It implements externalscaler.ExternalScaler's unary methods on grpc-go's own server and
// answers from an in-memory map, as a scaler whose values a background poller keeps up to date would:
// a map behind a sync.RWMutex, keyed by the ScaledObject's namespace/name.
//
//	refscaler -addr 127.0.0.1:PORT -target NAMESPACE/NAME -int N -float X [-target-size T]
//
// GetMetrics answers one MetricValue {the metricName asked for, N, X} for a known ScaledObject and
// NOT_FOUND otherwise; GetMetricSpec {scaledobject name, T, T}; IsActive N > 0. On SIGTERM or SIGINT it
// prints {"getmetrics_calls": CALLS, "getmetrics_ok": OK} on stdout (so that a bench run that answered
// errors cannot pass for a fast one), then {"gomaxprocs": P} on a line of its own (the bench shows and
// checks the P it ran with), and exits 0.
//
// Built by tests/integration/grpcgo_client.py's build() in GOPATH mode against Debian's packages
// (golang-go, golang-google-grpc-dev 1.33; GO111MODULE=off GOPATH=/usr/share/gocode:<repo>/tests/gopath),
// offline: no go.mod on purpose. Messages and the service description: tests/gopath/src/externalscaler/.
// grpc-go's defaults throughout (GOMAXPROCS = every core, as a scaler in a pod without a CPU limit; the
// bench's --pin mode runs it on one core with GOMAXPROCS=1, as in a pod limited to one CPU).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	es "externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type value struct {
	int   int64
	float float64
}

type scaler struct {
	mu         sync.RWMutex
	values     map[string]value // namespace/name -> the latest reading
	targetSize int64
	calls, ok  uint64 // GetMetrics calls, and those answered OK (atomic)
}

func key(ref *es.ScaledObjectRef) string { return ref.Namespace + "/" + ref.Name }

func (s *scaler) lookup(ref *es.ScaledObjectRef) (value, error) {
	if ref == nil {
		return value{}, status.Error(codes.InvalidArgument, "scaledObjectRef is required")
	}
	s.mu.RLock()
	v, found := s.values[key(ref)]
	s.mu.RUnlock()
	if !found {
		return value{}, status.Errorf(codes.NotFound, "no value for %s", key(ref))
	}
	return v, nil
}

func (s *scaler) IsActive(ctx context.Context, ref *es.ScaledObjectRef) (*es.IsActiveResponse, error) {
	v, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	return &es.IsActiveResponse{Result: v.int > 0}, nil
}

func (s *scaler) GetMetricSpec(ctx context.Context, ref *es.ScaledObjectRef) (*es.MetricList, error) {
	if _, err := s.lookup(ref); err != nil {
		return nil, err
	}
	t := s.targetSize
	return &es.MetricList{Items: []es.Metric{{Name: ref.Name, Int: t, Float: float64(t)}}}, nil
}

func (s *scaler) GetMetrics(ctx context.Context, req *es.GetMetricsRequest) (*es.MetricList, error) {
	atomic.AddUint64(&s.calls, 1)
	v, err := s.lookup(req.Ref)
	if err != nil {
		return nil, err
	}
	atomic.AddUint64(&s.ok, 1)
	return &es.MetricList{Items: []es.Metric{{Name: req.MetricName, Int: v.int, Float: v.float}}}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "host:port to listen on (h2c)")
	target := flag.String("target", "default/web", "NAMESPACE/NAME of the ScaledObject the map holds")
	n := flag.Int64("int", 1, "its metricValue")
	x := flag.Float64("float", 1, "its metricValueFloat")
	size := flag.Int64("target-size", 10, "GetMetricSpec's targetSize")
	flag.Parse()
	if flag.NArg() > 0 || !strings.Contains(*target, "/") {
		fmt.Fprintln(os.Stderr, "refscaler: -target NAMESPACE/NAME, no positional arguments")
		os.Exit(2)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refscaler: listen %s: %v\n", *addr, err)
		os.Exit(2)
	}
	s := &scaler{values: map[string]value{*target: {*n, *x}}, targetSize: *size}
	srv := grpc.NewServer()
	es.RegisterExternalScalerServer(srv, s)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "refscaler: serve: %v\n", err)
		os.Exit(1)
	}
	// A struct, not a map: the fields in this order (grpc_bench.py reads them so).
	out, _ := json.Marshal(struct {
		Calls uint64 `json:"getmetrics_calls"`
		OK    uint64 `json:"getmetrics_ok"`
	}{atomic.LoadUint64(&s.calls), atomic.LoadUint64(&s.ok)})
	fmt.Println(string(out))
	// A line of its own, so that the counts' line stays as it was (tests/integration/test_grpc_go.py).
	fmt.Printf("{\"gomaxprocs\":%d}\n", runtime.GOMAXPROCS(0))
}
