// Command deviceplugin advertises fake nvidia.com/gpu devices to the kubelet of the local
// test cluster's real node, through the kubelet device-plugin API v1beta1.
//
// e2e/cluster/real_node.py starts it after the kubelet and tracks it by PID. It serves
// ListAndWatch with -count healthy devices and answers Allocate with the environment
// NVIDIA_VISIBLE_DEVICES=<ids>, the way NVIDIA's plugin tells a container which GPUs it
// got. No GPU is touched: the pods' runtimes fall back to the CPU.
//
// A restarted kubelet removes every socket in its device-plugins folder and forgets its
// plugins, so the plugin watches both sockets and serves and registers again when either
// changes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

const watchPeriod = time.Second

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once; they never change, so it then waits for the kubelet
// to hang up.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, request *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	response := &pluginapi.AllocateResponse{}
	for _, container := range request.ContainerRequests {
		response.ContainerResponses = append(response.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(container.DevicesIds, ",")},
		})
	}
	return response, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// serve listens on socket (replacing a stale file) and returns the running server.
func serve(p *plugin, socket string) (*grpc.Server, error) {
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Printf("serving %s stopped: %v", socket, err)
		}
	}()
	return server, nil
}

// register tells the kubelet at kubeletSocket about the plugin listening at endpoint
// (a file name in the same folder).
func register(kubeletSocket, endpoint, resource string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     endpoint,
		ResourceName: resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	return err
}

// identity names a file's inode, so that a socket removed and made again reads as changed.
func identity(path string) string {
	info, err := os.Stat(path)
	if err != nil {
		return ""
	}
	stat := info.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", stat.Dev, stat.Ino)
}

func main() {
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins folder")
	count := flag.Int("count", 4, "how many devices to advertise")
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource's name")
	endpoint := flag.String("endpoint", "sluice-gpu.sock", "this plugin's socket, in -dir")
	flag.Parse()

	p := &plugin{}
	for i := 0; i < *count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("gpu-%d", i), Health: pluginapi.Healthy})
	}
	kubeletSocket := filepath.Join(*dir, "kubelet.sock")
	socket := filepath.Join(*dir, *endpoint)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	ticker := time.NewTicker(watchPeriod)
	defer ticker.Stop()

	var server *grpc.Server
	kubelet, own := "", ""
	for {
		if k, o := identity(kubeletSocket), identity(socket); k != "" && (k != kubelet || o != own) {
			if server != nil {
				server.Stop()
			}
			var err error
			if server, err = serve(p, socket); err != nil {
				log.Fatalf("listening on %s: %v", socket, err)
			}
			if err = register(kubeletSocket, *endpoint, *resource); err != nil {
				// The kubelet may be starting: try again at the next tick.
				log.Printf("registering with %s: %v", kubeletSocket, err)
				kubelet, own = "", ""
			} else {
				kubelet, own = k, identity(socket)
				log.Printf("registered %d %s devices with %s", *count, *resource, kubeletSocket)
			}
		}
		select {
		case <-signals:
			if server != nil {
				server.Stop()
			}
			os.Remove(socket)
			return
		case <-ticker.C:
		}
	}
}
