package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
	usersync "github.com/ldapgate/ldapgate/sync"
)

// httpService is the admin/export HTTP listener of serve.
type httpService struct {
	srv  *http.Server
	addr string // the address it listens on, its port resolved
	log  *zap.Logger
}

// startHTTP serves cfg.HTTP.Address (see httpHandler). An empty address
// starts nothing.
func startHTTP(cfg *configs.Config, ops *operations, cluster dcControl, log *zap.Logger) (*httpService, error) {
	if cfg.HTTP.Address == "" {
		return nil, nil
	}
	log = log.Named("http")
	l, err := net.Listen("tcp", cfg.HTTP.Address)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           httpHandler(cfg, ops, cluster, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          zap.NewStdLog(log),
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http listener stopped", zap.Error(err))
		}
	}()
	if !configs.IsLoopbackAddr(cfg.HTTP.Address) && cfg.HTTP.BearerToken == "" && cfg.HTTP.BasicUser == "" {
		log.Warn("the admin/export listener is reachable from the network without authentication: set http.bearer_token or http.basic_user",
			zap.String("listen", cfg.HTTP.Address))
	}
	log.Info("http listener started", zap.String("listen", l.Addr().String()))
	return &httpService{srv: srv, addr: l.Addr().String(), log: log}, nil
}

// address is the address the listener got, "" when there is none.
func (h *httpService) address() string {
	if h == nil {
		return ""
	}
	return h.addr
}

// httpHandler routes the listener:
//
//   - GET /healthz and GET /readyz answer anyone: health checks of load
//     balancers and orchestrators carry no credentials, and the answers hold
//     nothing secret;
//   - GET /status, GET /metrics and every admin route need the credential of
//     http.bearer_token or http.basic_user when one is set (401 otherwise);
//   - GET / is the status page and POST /api/dcs/drain, /api/dcs/undrain and
//     /api/sync its actions (page.go), with the same credentials; a POST a
//     browser sends from another origin is refused;
//   - GET /export/users.csv is the importer's, with the same credentials
//     (404 while the sync loop is off).
//
// A route registered for GET also answers HEAD; other methods get 405.
func httpHandler(cfg *configs.Config, ops *operations, cluster dcControl, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	auth := usersync.NewHTTPAuth(cfg.HTTP, log)
	admin := func(pattern string, h http.Handler) { mux.Handle(pattern, auth.Require(h)) }

	mux.HandleFunc("GET /healthz", ops.serveHealthz)
	mux.HandleFunc("GET /readyz", ops.serveReadyz)
	admin("GET /status", http.HandlerFunc(ops.serveStatus))
	admin("GET /metrics", ops.serveMetrics())
	newStatusPage(ops, cluster, log).register(mux, auth)
	off := auth.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the user import is off (sync.enabled: false, or the sync loop could not start: see the log)", http.StatusNotFound)
	}))
	mux.HandleFunc(usersync.ExportPath, func(w http.ResponseWriter, r *http.Request) {
		if im := ops.importer(); im != nil {
			im.Handler().ServeHTTP(w, r)
			return
		}
		off.ServeHTTP(w, r)
	})
	return mux
}

// stop shuts the listener down within ctx.
func (h *httpService) stop(ctx context.Context) {
	if h == nil {
		return
	}
	if err := h.srv.Shutdown(ctx); err != nil {
		h.log.Warn("http listener shutdown", zap.Error(err))
	}
}
