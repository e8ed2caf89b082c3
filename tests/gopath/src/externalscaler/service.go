package externalscaler

// The server side of the ExternalScaler service, as protoc-gen-go (plugins=grpc, the generation that
// grpc-go 1.33 goes with) writes it into externalscaler.pb.go: the interface a scaler implements, and the
// service description that grpc.Server dispatches on. A scaler written the usual way in Go registers its
// implementation with RegisterExternalScalerServer; grpc-go then decodes each request with the registered
// codec (wire.go's) and calls the method. StreamIsActive and StreamMetricSpec are left out: the
// reference scaler serves the unary methods only (grpc-go answers UNIMPLEMENTED to the others).

import (
	"context"

	"google.golang.org/grpc"
)

// ExternalScalerServer is the unary part of service ExternalScaler (proto/externalscaler.proto).
type ExternalScalerServer interface {
	IsActive(context.Context, *ScaledObjectRef) (*IsActiveResponse, error)
	GetMetricSpec(context.Context, *ScaledObjectRef) (*MetricList, error)
	GetMetrics(context.Context, *GetMetricsRequest) (*MetricList, error)
}

func RegisterExternalScalerServer(s *grpc.Server, srv ExternalScalerServer) {
	s.RegisterService(&serviceDesc, srv)
}

func isActiveHandler(srv interface{}, ctx context.Context, dec func(interface{}) error,
	interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(ScaledObjectRef)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(ExternalScalerServer).IsActive(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/externalscaler.ExternalScaler/IsActive"}
	return interceptor(ctx, in, info, func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(ExternalScalerServer).IsActive(ctx, req.(*ScaledObjectRef))
	})
}

func getMetricSpecHandler(srv interface{}, ctx context.Context, dec func(interface{}) error,
	interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(ScaledObjectRef)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(ExternalScalerServer).GetMetricSpec(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/externalscaler.ExternalScaler/GetMetricSpec"}
	return interceptor(ctx, in, info, func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(ExternalScalerServer).GetMetricSpec(ctx, req.(*ScaledObjectRef))
	})
}

func getMetricsHandler(srv interface{}, ctx context.Context, dec func(interface{}) error,
	interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(GetMetricsRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(ExternalScalerServer).GetMetrics(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/externalscaler.ExternalScaler/GetMetrics"}
	return interceptor(ctx, in, info, func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(ExternalScalerServer).GetMetrics(ctx, req.(*GetMetricsRequest))
	})
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "externalscaler.ExternalScaler",
	HandlerType: (*ExternalScalerServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "IsActive", Handler: isActiveHandler},
		{MethodName: "GetMetricSpec", Handler: getMetricSpecHandler},
		{MethodName: "GetMetrics", Handler: getMetricsHandler},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "externalscaler.proto",
}
