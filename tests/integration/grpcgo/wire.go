// The messages of proto/externalscaler.proto that keda_client sends and reads, encoded by hand, and the
// grpc-go codec that carries them.
//
// No generated code, so that the build needs grpc-go and the Go compiler only. Generating would
// need protoc and a plugin of the right generation at build time: grpc-go 1.33 in Debian marshals through
// github.com/golang/protobuf 1.3 (golang-github-golang-protobuf-1-3-dev), which matches protoc-gen-go-1-3
// (plugins=grpc), not Debian's current protoc-gen-go 1.28 (APIv2 messages, google.golang.org/protobuf) and
// its separate protoc-gen-go-grpc; and the generated package would need a GOPATH of its own. For five
// small messages that is more to go wrong offline than the few lines below. Instead the codec below
// replaces grpc-go's "proto" codec (so the content-type stays application/grpc, as KEDA sends it) and
// encodes the few fields of proto/externalscaler.proto by hand (protobuf encoding: varints, fixed64,
// length-delimited fields; https://protobuf.dev/programming-guides/encoding/). Unknown fields are skipped.

package main

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"google.golang.org/grpc/encoding"
)

// ---- messages -----------------------------------------------------------------------------------------

type message interface {
	marshal() []byte
	unmarshal([]byte) error
}

type scaledObjectRef struct {
	name, namespace string
	metadata        map[string]string
}

type getMetricsRequest struct {
	ref        *scaledObjectRef
	metricName string
}

type isActiveResponse struct{ Result bool }

// metric is MetricSpec {metricName=1, targetSize=2, targetSizeFloat=3} and MetricValue {metricName=1,
// metricValue=2, metricValueFloat=3}: the same three fields, told apart by the JSON written.
type metric struct {
	name  string
	int   int64
	float float64
}

type metricList struct{ items []metric } // GetMetricSpecResponse and GetMetricsResponse: field 1 repeated

func (m *scaledObjectRef) marshal() []byte {
	b := appendString(nil, 1, m.name)
	b = appendString(b, 2, m.namespace)
	keys := make([]string, 0, len(m.metadata))
	for k := range m.metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic bytes; map order does not matter to a decoder
	for _, k := range keys {
		// A map field is a repeated entry message {key=1, value=2}; both are written.
		e := appendBytes(nil, 1, []byte(k))
		e = appendBytes(e, 2, []byte(m.metadata[k]))
		b = appendBytes(b, 3, e)
	}
	return b
}

func (m *scaledObjectRef) unmarshal([]byte) error { return errors.New("not a response") }

func (m *getMetricsRequest) marshal() []byte {
	b := appendBytes(nil, 1, m.ref.marshal())
	return appendString(b, 2, m.metricName)
}

func (m *getMetricsRequest) unmarshal([]byte) error { return errors.New("not a response") }

func (m *isActiveResponse) marshal() []byte { return nil }

func (m *isActiveResponse) unmarshal(b []byte) error {
	r := reader{b: b}
	for !r.done() {
		field, wt, err := r.tag()
		if err != nil {
			return err
		}
		if field == 1 && wt == wireVarint {
			v, err := r.varint()
			if err != nil {
				return err
			}
			m.Result = v != 0
		} else if err := r.skip(field, wt); err != nil {
			return err
		}
	}
	return nil
}

func (m *metricList) marshal() []byte { return nil }

func (m *metricList) unmarshal(b []byte) error {
	r := reader{b: b}
	for !r.done() {
		field, wt, err := r.tag()
		if err != nil {
			return err
		}
		if field != 1 {
			if err := r.skip(field, wt); err != nil {
				return err
			}
			continue
		}
		if wt != wireBytes {
			return fmt.Errorf("field 1 has wire type %d, want 2", wt)
		}
		sub, err := r.bytes()
		if err != nil {
			return err
		}
		var it metric
		if err := it.unmarshal(sub); err != nil {
			return err
		}
		m.items = append(m.items, it)
	}
	return nil
}

func (m *metric) unmarshal(b []byte) error {
	r := reader{b: b}
	for !r.done() {
		field, wt, err := r.tag()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wt == wireBytes:
			s, err := r.bytes()
			if err != nil {
				return err
			}
			m.name = string(s)
		case field == 2 && wt == wireVarint:
			v, err := r.varint()
			if err != nil {
				return err
			}
			m.int = int64(v) // int64 is two's complement in 10 bytes when negative
		case field == 3 && wt == wireFixed64:
			v, err := r.fixed64()
			if err != nil {
				return err
			}
			m.float = math.Float64frombits(v)
		case field >= 1 && field <= 3:
			return fmt.Errorf("field %d has wire type %d", field, wt)
		default:
			if err := r.skip(field, wt); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- protobuf wire format -------------------------------------------------------------------------------

const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendBytes(b []byte, field int, s []byte) []byte {
	b = appendVarint(b, uint64(field)<<3|wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendString leaves out an empty string: proto3 does not encode a field at its default.
func appendString(b []byte, field int, s string) []byte {
	if s == "" {
		return b
	}
	return appendBytes(b, field, []byte(s))
}

type reader struct {
	b   []byte
	off int
}

var errTruncated = errors.New("truncated protobuf message")

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.b) {
			return 0, errTruncated
		}
		c := r.b[r.off]
		r.off++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint longer than 10 bytes")
}

func (r *reader) tag() (int, int, error) {
	v, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	if v>>3 == 0 || v>>3 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("bad field number %d", v>>3)
	}
	return int(v >> 3), int(v & 7), nil
}

func (r *reader) fixed64() (uint64, error) {
	if len(r.b)-r.off < 8 {
		return 0, errTruncated
	}
	var v uint64
	for i := 7; i >= 0; i-- { // little-endian
		v = v<<8 | uint64(r.b[r.off+i])
	}
	r.off += 8
	return v, nil
}

func (r *reader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, errTruncated
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

func (r *reader) skip(field, wt int) error {
	var err error
	switch wt {
	case wireVarint:
		_, err = r.varint()
	case wireFixed64:
		_, err = r.fixed64()
	case wireBytes:
		_, err = r.bytes()
	case wireFixed32:
		if len(r.b)-r.off < 4 {
			return errTruncated
		}
		r.off += 4
	default:
		err = fmt.Errorf("field %d: unsupported wire type %d", field, wt)
	}
	return err
}

// codec replaces grpc-go's registered "proto" codec for this process: requests keep the content-type
// application/grpc that KEDA's generated client sends, and the bytes are the messages' own encoding.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v interface{}) ([]byte, error) {
	m, ok := v.(message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a message", v)
	}
	return m.marshal(), nil
}

func (codec) Unmarshal(b []byte, v interface{}) error {
	m, ok := v.(message)
	if !ok {
		return fmt.Errorf("codec: %T is not a message", v)
	}
	return m.unmarshal(b)
}

func init() { encoding.RegisterCodec(codec{}) }
