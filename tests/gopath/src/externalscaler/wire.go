// Package externalscaler: the messages of proto/externalscaler.proto, encoded by hand, and the grpc-go
// codec that carries them. Shared, in GOPATH mode (GOPATH=/usr/share/gocode:<repo>/tests/gopath), by the
// grpc-go programs of the tests: tests/integration/grpcgo/keda_client.go (the client, as KEDA calls a
// scaler) and tests/bench/refscaler (the reference scaler server of `make bench`). Each message encodes
// and decodes both ways, so that a client and a server use the same code.
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
package externalscaler

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"google.golang.org/grpc/encoding"
)

// ---- messages -----------------------------------------------------------------------------------------

// Message is what the codec carries: every message below, encoded and decoded both ways.
type Message interface {
	Marshal() []byte
	Unmarshal([]byte) error
}

type ScaledObjectRef struct {
	Name, Namespace string
	Metadata        map[string]string
}

type GetMetricsRequest struct {
	Ref        *ScaledObjectRef
	MetricName string
}

type IsActiveResponse struct{ Result bool }

// Metric is MetricSpec {metricName=1, targetSize=2, targetSizeFloat=3} and MetricValue {metricName=1,
// metricValue=2, metricValueFloat=3}: the same three fields, told apart by the message that holds them.
type Metric struct {
	Name  string
	Int   int64
	Float float64
}

// MetricList is GetMetricSpecResponse and GetMetricsResponse: field 1 repeated.
type MetricList struct{ Items []Metric }

func (m *ScaledObjectRef) Marshal() []byte {
	b := appendString(nil, 1, m.Name)
	b = appendString(b, 2, m.Namespace)
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic bytes; map order does not matter to a decoder
	for _, k := range keys {
		// A map field is a repeated entry message {key=1, value=2}; both are written.
		e := appendBytes(nil, 1, []byte(k))
		e = appendBytes(e, 2, []byte(m.Metadata[k]))
		b = appendBytes(b, 3, e)
	}
	return b
}

func (m *ScaledObjectRef) Unmarshal(b []byte) error {
	return bytesFields(b, 3, func(field int, s []byte) error {
		switch field {
		case 1:
			m.Name = string(s)
		case 2:
			m.Namespace = string(s)
		case 3:
			k, v, err := mapEntry(s)
			if err != nil {
				return err
			}
			if m.Metadata == nil {
				m.Metadata = map[string]string{}
			}
			m.Metadata[k] = v // a repeated key: the last one wins (protobuf's rule for maps)
		}
		return nil
	})
}

// bytesFields calls fn with each length-delimited field numbered 1 to last of a message, in order, and
// skips the other fields; a field in that range with another wire type is an error.
func bytesFields(b []byte, last int, fn func(field int, s []byte) error) error {
	r := reader{b: b}
	for !r.done() {
		field, wt, err := r.tag()
		if err != nil {
			return err
		}
		if field < 1 || field > last {
			if err := r.skip(field, wt); err != nil {
				return err
			}
			continue
		}
		if wt != wireBytes {
			return fmt.Errorf("field %d has wire type %d, want 2", field, wt)
		}
		s, err := r.bytes()
		if err != nil {
			return err
		}
		if err := fn(field, s); err != nil {
			return err
		}
	}
	return nil
}

// mapEntry decodes a map<string, string> entry {key=1, value=2}; a missing half is "".
func mapEntry(b []byte) (string, string, error) {
	var k, v string
	r := reader{b: b}
	for !r.done() {
		field, wt, err := r.tag()
		if err != nil {
			return "", "", err
		}
		if (field == 1 || field == 2) && wt == wireBytes {
			s, err := r.bytes()
			if err != nil {
				return "", "", err
			}
			if field == 1 {
				k = string(s)
			} else {
				v = string(s)
			}
		} else if err := r.skip(field, wt); err != nil {
			return "", "", err
		}
	}
	return k, v, nil
}

func (m *GetMetricsRequest) Marshal() []byte {
	b := appendBytes(nil, 1, m.Ref.Marshal())
	return appendString(b, 2, m.MetricName)
}

func (m *GetMetricsRequest) Unmarshal(b []byte) error {
	return bytesFields(b, 2, func(field int, s []byte) error {
		if field == 2 {
			m.MetricName = string(s)
			return nil
		}
		if m.Ref == nil {
			m.Ref = &ScaledObjectRef{}
		}
		return m.Ref.Unmarshal(s)
	})
}

func (m *IsActiveResponse) Marshal() []byte {
	if !m.Result {
		return nil // proto3: false is the default, not encoded
	}
	return []byte{1<<3 | wireVarint, 1}
}

func (m *IsActiveResponse) Unmarshal(b []byte) error {
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

func (m *MetricList) Marshal() []byte {
	var b []byte
	for i := range m.Items {
		b = appendBytes(b, 1, m.Items[i].Marshal())
	}
	return b
}

func (m *MetricList) Unmarshal(b []byte) error {
	return bytesFields(b, 1, func(_ int, sub []byte) error {
		var it Metric
		if err := it.Unmarshal(sub); err != nil {
			return err
		}
		m.Items = append(m.Items, it)
		return nil
	})
}

// Marshal leaves out the fields at their proto3 default (0, 0.0, ""), as generated code does.
func (m *Metric) Marshal() []byte {
	b := appendString(nil, 1, m.Name)
	if m.Int != 0 {
		b = appendVarint(append(b, 2<<3|wireVarint), uint64(m.Int)) // a negative int64: 10 bytes
	}
	if m.Float != 0 || math.Signbit(m.Float) {
		b = append(b, 3<<3|wireFixed64)
		v := math.Float64bits(m.Float)
		for i := 0; i < 8; i++ { // little-endian
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b
}

func (m *Metric) Unmarshal(b []byte) error {
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
			m.Name = string(s)
		case field == 2 && wt == wireVarint:
			v, err := r.varint()
			if err != nil {
				return err
			}
			m.Int = int64(v) // int64 is two's complement in 10 bytes when negative
		case field == 3 && wt == wireFixed64:
			v, err := r.fixed64()
			if err != nil {
				return err
			}
			m.Float = math.Float64frombits(v)
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

// codec replaces grpc-go's registered "proto" codec in every process that imports this package: messages
// keep the content-type application/grpc that KEDA's generated client sends, and the bytes are the
// messages' own encoding.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v interface{}) ([]byte, error) {
	m, ok := v.(Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a message", v)
	}
	return m.Marshal(), nil
}

func (codec) Unmarshal(b []byte, v interface{}) error {
	m, ok := v.(Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a message", v)
	}
	return m.Unmarshal(b)
}

func init() { encoding.RegisterCodec(codec{}) }
