package main

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
)

// maxBurst bounds how long a burst of changes postpones its reload: at most
// this many reload.debounce periods after its first change.
const maxBurst = 10

// configWatch tells serve's loop when the configuration file, or a file it
// names, has changed (reload.watch). It watches the files' directories, not
// the files, so that a file renamed over the old one (what editors and
// configuration management do) is seen as well as a write in place. A burst
// of changes is one signal on due, reload.debounce after the last change of
// the burst, or maxBurst debounce periods after its first.
type configWatch struct {
	w        *fsnotify.Watcher
	debounce time.Duration
	log      *zap.Logger
	due      chan struct{} // a reload is due; buffered 1, so bursts coalesce
	done     chan struct{} // closed when run has ended

	mu    sync.Mutex
	files map[string]bool // the watched files, absolute and clean
	dirs  map[string]bool // their directories, watched
}

// watchedFiles are the files whose change reloads cfg, read from path: the
// configuration file and the files it names that a reload reads again.
func watchedFiles(path string, cfg *configs.Config) []string {
	var out []string
	for _, f := range []string{path, cfg.Upstream.CAFile, cfg.Upstream.BindPasswordFile,
		cfg.Search.ProxyPasswordFile, cfg.Listen.TLS.CertFile, cfg.Listen.TLS.KeyFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// startConfigWatch watches files (see watchedFiles) until close.
func startConfigWatch(files []string, debounce time.Duration, log *zap.Logger) (*configWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	cw := &configWatch{w: w, debounce: debounce, log: log.Named("reload"),
		due: make(chan struct{}, 1), done: make(chan struct{}), dirs: map[string]bool{}}
	if err := cw.watch(files); err != nil {
		_ = w.Close()
		return nil, err
	}
	go cw.run()
	return cw, nil
}

// watch makes files the watched set: the directories of new files are
// added, those no file needs any more removed.
func (cw *configWatch) watch(files []string) error {
	want := make(map[string]bool, len(files))
	dirs := map[string]bool{}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		want[abs] = true
		dirs[filepath.Dir(abs)] = true
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	for d := range dirs {
		if cw.dirs[d] {
			continue
		}
		if err := cw.w.Add(d); err != nil {
			return err
		}
		cw.dirs[d] = true
	}
	for d := range cw.dirs {
		if !dirs[d] {
			_ = cw.w.Remove(d) // the directory may be gone: then it is not watched anyway
			delete(cw.dirs, d)
		}
	}
	cw.files = want
	return nil
}

// concerns reports whether ev changed a watched file. A change of mode alone
// does not count.
func (cw *configWatch) concerns(ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Remove) {
		return false
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.files[filepath.Clean(ev.Name)]
}

// run turns the watcher's events into signals on due until close.
func (cw *configWatch) run() {
	defer close(cw.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		fire  <-chan time.Time // nil while no burst is pending
		first time.Time        // the first change of the pending burst
	)
	for {
		select {
		case ev, ok := <-cw.w.Events:
			if !ok {
				return
			}
			if !cw.concerns(ev) {
				continue
			}
			now := time.Now()
			if fire == nil {
				first = now
			}
			wait := min(cw.debounce, max(first.Add(maxBurst*cw.debounce).Sub(now), 0))
			cw.log.Debug("config watch: a watched file changed", zap.String("file", ev.Name), zap.Stringer("op", ev.Op))
			timer.Reset(wait)
			fire = timer.C
		case err, ok := <-cw.w.Errors:
			if !ok {
				return
			}
			cw.log.Warn("config watch: the watch lost events; reload with SIGHUP if a change is not picked up", zap.Error(err))
		case <-fire:
			fire = nil
			select {
			case cw.due <- struct{}{}:
			default: // one is due already
			}
		}
	}
}

// close stops watching and waits for run to end.
func (cw *configWatch) close() {
	_ = cw.w.Close()
	<-cw.done
}
