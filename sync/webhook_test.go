package usersync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ldapgate/ldapgate/configs"
)

// Secrets the webhook tests configure; no log line may contain them.
const (
	impHookToken = "tok-3f9a1c-never-log"
	impHookQuery = "qs-77b1e0-never-log"
)

// impHookRequest is one request the test webhook received.
type impHookRequest struct {
	key, auth, contentType string
	body                   []byte
}

// impHook is a webhook receiver that answers with the scripted statuses in
// turn (200 once they run out); an answer of -1 drops the connection, -2
// waits until the client gives up.
type impHook struct {
	mu       sync.Mutex
	script   []int
	location string // for a 3xx answer
	requests []impHookRequest
}

func (h *impHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests = append(h.requests, impHookRequest{r.Header.Get("Idempotency-Key"), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
	status := http.StatusOK
	if len(h.script) > 0 {
		status, h.script = h.script[0], h.script[1:]
	}
	h.mu.Unlock()
	switch status {
	case -1:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	case -2:
		<-r.Context().Done()
	default:
		if h.location != "" {
			w.Header().Set("Location", h.location)
		}
		w.WriteHeader(status)
	}
}

func (h *impHook) received() []impHookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]impHookRequest(nil), h.requests...)
}

func (h *impHook) answer(statuses ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.script = append(h.script, statuses...)
}

// impHookEnv is an importer configuration with a webhook, the sleeps it
// asked for and its log, which is checked for secrets when the test ends.
type impHookEnv struct {
	cfg    configs.Config
	clock  *impClock
	hook   *impHook
	logs   *observer.ObservedLogs
	log    *zap.Logger
	mu     sync.Mutex
	sleeps []time.Duration
}

func newImpHookEnv(t *testing.T, statuses ...int) *impHookEnv {
	t.Helper()
	env := &impHookEnv{cfg: impConfig(t), clock: newImpClock(), hook: &impHook{script: statuses}}
	srv := httptest.NewServer(env.hook)
	t.Cleanup(srv.Close)
	env.cfg.Import.Webhook.URL = srv.URL + "/hooks/users?key=" + impHookQuery
	env.cfg.Import.Webhook.BearerToken = impHookToken
	env.cfg.Import.Webhook.MaxAttempts = 3
	core, logs := observer.New(zapcore.DebugLevel)
	env.logs, env.log = logs, zap.New(core)
	t.Cleanup(func() { impNoSecretsLogged(t, logs, impHookToken, impHookQuery) })
	return env
}

// importer builds an importer on env's data directory (again: a restart).
func (env *impHookEnv) importer(t *testing.T) *Importer {
	t.Helper()
	im, err := NewImporter(env.cfg, env.log, WithClock(env.clock.now), WithSleep(func(_ context.Context, d time.Duration) error {
		env.mu.Lock()
		defer env.mu.Unlock()
		env.sleeps = append(env.sleeps, d)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func (env *impHookEnv) slept() []time.Duration {
	env.mu.Lock()
	defer env.mu.Unlock()
	return append([]time.Duration(nil), env.sleeps...)
}

// impApplyErr plans users and applies the plan, returning Apply's error.
func impApplyErr(t *testing.T, im *Importer, users []Entry) (ApplyResult, error) {
	t.Helper()
	p, err := im.Plan(users)
	if err != nil {
		t.Fatal(err)
	}
	return im.Apply(context.Background(), p, ApplyOptions{})
}

// impNoSecretsLogged fails when any message or field of logs holds a secret.
func impNoSecretsLogged(t *testing.T, logs *observer.ObservedLogs, secrets ...string) {
	t.Helper()
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("a log line holds a secret: %s", line)
			}
		}
	}
}

func TestWebhookRetriesServerErrorsWithBackoff(t *testing.T) {
	env := newImpHookEnv(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	res, err := impApplyErr(t, env.importer(t), impSeededList(t))
	if err != nil {
		t.Fatal(err)
	}
	reqs := env.hook.received()
	if len(reqs) != 3 || res.WebhookDelivered != 1 || res.WebhookPending != 0 {
		t.Fatalf("%d requests, result %+v; want 3 requests and the batch delivered", len(reqs), res)
	}
	if got := env.slept(); fmt.Sprint(got) != "[1s 2s]" {
		t.Errorf("waited %v between attempts, want [1s 2s]", got)
	}
	t.Run("every attempt carries the same idempotency key and body", func(t *testing.T) {
		for i, r := range reqs {
			if r.key != res.WebhookKey || string(r.body) != string(reqs[0].body) {
				t.Errorf("attempt %d: key %q, want %q, or another body", i+1, r.key, res.WebhookKey)
			}
		}
	})
	t.Run("the key is the SHA-256 of the body", func(t *testing.T) {
		if res.WebhookKey != sha256Hex(reqs[0].body) {
			t.Errorf("key %s, body hash %s", res.WebhookKey, sha256Hex(reqs[0].body))
		}
	})
	t.Run("the bearer token and the content type are sent", func(t *testing.T) {
		if reqs[0].auth != "Bearer "+impHookToken || reqs[0].contentType != "application/json" {
			t.Errorf("Authorization %q, Content-Type %q", reqs[0].auth, reqs[0].contentType)
		}
	})
	t.Run("the log names the webhook without its query and says each retry", func(t *testing.T) {
		retries := env.logs.FilterMessage("webhook attempt failed; retrying").All()
		if len(retries) != 2 {
			t.Fatalf("%d retry lines, want 2", len(retries))
		}
		if u, _ := retries[0].ContextMap()["webhook"].(string); !strings.HasSuffix(u, "/hooks/users") {
			t.Errorf("webhook field %q", u)
		}
	})
	t.Run("the body lists the changes", func(t *testing.T) {
		var b webhookBatch
		if err := json.Unmarshal(reqs[0].body, &b); err != nil {
			t.Fatal(err)
		}
		if b.Sequence != 1 || b.Mode != ModeCreateUpdateRemove || len(b.Changes) != 9 || b.Changes[0].Action != ActionCreate || b.Changes[0].User.Username != "asmith" {
			t.Errorf("batch: sequence %d, mode %s, %d changes, first %+v", b.Sequence, b.Mode, len(b.Changes), b.Changes[0])
		}
	})
}

func TestWebhookClientErrorIsNotRetried(t *testing.T) {
	env := newImpHookEnv(t, http.StatusBadRequest)
	im := env.importer(t)
	users := impSeededList(t)
	res, err := impApplyErr(t, im, users)
	if !errors.Is(err, ErrWebhookPending) || res.WebhookPending != 1 || !res.Changed {
		t.Fatalf("result %+v, error %v; want the import applied and the batch pending", res, err)
	}
	if n := len(env.hook.received()); n != 1 || len(env.slept()) != 0 {
		t.Fatalf("%d requests, %d waits; want one request and no retry", n, len(env.slept()))
	}
	t.Run("the next apply sends the pending batch again with the same key", func(t *testing.T) {
		again, err := impApplyErr(t, im, users)
		reqs := env.hook.received()
		if err != nil || again.Changed || again.WebhookDelivered != 1 || again.WebhookPending != 0 || len(reqs) != 2 || reqs[1].key != res.WebhookKey {
			t.Errorf("second apply %+v (%v), %d requests; want the first batch delivered with key %s", again, err, len(reqs), res.WebhookKey)
		}
	})
}

func TestWebhookPendingBatchSurvivesARestart(t *testing.T) {
	env := newImpHookEnv(t, http.StatusBadGateway, http.StatusBadGateway, http.StatusBadGateway)
	users := impSeededList(t)
	first, err := impApplyErr(t, env.importer(t), users)
	if !errors.Is(err, ErrWebhookPending) || len(env.hook.received()) != 3 {
		t.Fatalf("first apply %+v (%v) after %d requests; want 3 attempts, then pending", first, err, len(env.hook.received()))
	}
	// After a restart, a new change: the pending batch goes first, unchanged.
	users[0] = impWith(users[0], "telephoneNumber", "+1 555 0199")
	second, err := impApplyErr(t, env.importer(t), users)
	if err != nil {
		t.Fatal(err)
	}
	reqs := env.hook.received()[3:]
	if len(reqs) != 2 || reqs[0].key != first.WebhookKey || reqs[1].key != second.WebhookKey || second.WebhookDelivered != 2 {
		t.Fatalf("after the restart: %d requests, result %+v; want the pending batch %s then %s", len(reqs), second, first.WebhookKey, second.WebhookKey)
	}
	t.Run("a restart after delivery sends nothing again", func(t *testing.T) {
		third, err := impApplyErr(t, env.importer(t), users)
		if err != nil || third.Changed || third.WebhookDelivered != 0 || len(env.hook.received()) != 5 {
			t.Errorf("third apply %+v (%v), %d requests in all; want nothing sent", third, err, len(env.hook.received()))
		}
	})
}

func TestWebhookTransportFailures(t *testing.T) {
	tests := []struct {
		name   string
		script []int
	}{
		{"a dropped connection is retried", []int{-1}},
		{"an attempt that runs past the timeout is retried", []int{-2}},
		{"429 Too Many Requests is retried", []int{http.StatusTooManyRequests}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newImpHookEnv(t, tc.script...)
			env.cfg.Import.Webhook.Timeout = 200 * time.Millisecond
			res, err := impApplyErr(t, env.importer(t), impSeededList(t))
			if err != nil || res.WebhookDelivered != 1 || len(env.hook.received()) != 2 {
				t.Errorf("result %+v (%v) after %d requests; want delivered on the second", res, err, len(env.hook.received()))
			}
		})
	}
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	elsewhere := &impHook{}
	other := httptest.NewServer(elsewhere)
	defer other.Close()
	env := newImpHookEnv(t, http.StatusTemporaryRedirect)
	env.hook.location = other.URL + "/steal"
	res, err := impApplyErr(t, env.importer(t), impSeededList(t))
	if !errors.Is(err, ErrWebhookPending) || len(elsewhere.received()) != 0 || len(env.hook.received()) != 1 {
		t.Errorf("result %+v (%v); the redirect target got %d requests; want none and the batch pending", res, err, len(elsewhere.received()))
	}
}

func TestWebhookIdempotencyKey(t *testing.T) {
	users := impSeededList(t)
	key := func(t *testing.T, clock time.Duration, batches ...[]Entry) []string {
		env := newImpHookEnv(t)
		env.clock.advance(clock)
		im := env.importer(t)
		var keys []string
		for _, u := range batches {
			res, err := impApplyErr(t, im, u)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, res.WebhookKey)
		}
		return keys
	}
	changed := append([]Entry(nil), users...)
	changed[0] = impWith(changed[0], "telephoneNumber", "+1 555 0199")
	t.Run("the same change gives the same key whenever it is applied", func(t *testing.T) {
		if a, b := key(t, 0, users), key(t, 48*time.Hour, users); a[0] != b[0] {
			t.Errorf("keys %s and %s", a[0], b[0])
		}
	})
	t.Run("another change gives another key", func(t *testing.T) {
		if a, b := key(t, 0, users), key(t, 0, changed); a[0] == b[0] {
			t.Errorf("both keys %s", a[0])
		}
	})
	t.Run("a change made again later gets a new key", func(t *testing.T) {
		k := key(t, 0, users, changed, users, changed)
		if k[1] == k[3] || k[2] == "" {
			t.Errorf("keys %q: the second and fourth batch must differ", k)
		}
	})
	t.Run("an apply that changes nothing sends no batch", func(t *testing.T) {
		if k := key(t, 0, users, users); k[1] != "" {
			t.Errorf("second key %q, want none", k[1])
		}
	})
}
