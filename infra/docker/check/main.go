// Command dockercheck checks Tidings' Dockerfile, .dockerignore and docker-compose.yml
// without a Docker engine, with the code Docker itself runs for them: BuildKit's Dockerfile
// frontend (the rules of `docker build --check`) and compose-go (the loader of
// `docker compose`: YAML, interpolation, the Compose JSON schema, consistency). On top of
// that it checks what issue "Docker files" asked for, so that it does not come back: a
// non-root user and a HEALTHCHECK in the image, cached builds, a build context that has
// what the build copies, published and advertised ports the host can use, named volumes,
// health checks on every long-running service, probes on the ports the services listen on,
// and runtime libraries that the base image provides.
//
//	go run . REPO [TIDINGS_BINARY]
//
// Prints one line per check, then "dockercheck: N passed, N failed", and exits 1 if any
// failed.
package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

var passed, failed int

func check(ok bool, format string, args ...any) {
	status := "ok  "
	if ok {
		passed++
	} else {
		status = "FAIL"
		failed++
	}
	fmt.Printf("%s %s\n", status, fmt.Sprintf(format, args...))
}

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: dockercheck REPO [TIDINGS_BINARY]")
		os.Exit(2)
	}
	repo := os.Args[1]
	df := checkDockerfile(repo)
	checkContext(repo, df)
	checkCompose(repo, df)
	if len(os.Args) == 3 {
		checkLibraries(os.Args[2], df)
	} else {
		fmt.Println("skip runtime libraries: no tidings binary given")
	}
	fmt.Printf("dockercheck: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// ---- Dockerfile ------------------------------------------------------------------------

type dockerfile struct {
	stages   []instructions.Stage
	final    instructions.Stage
	env      map[string]string // ENV of the final stage
	installs []string          // packages apt-get installed in the final stage
}

// offlineResolver answers BuildKit's base-image lookups without a registry: a Linux image
// with the usual PATH. The lint rules need a platform and an environment, not the image.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	config := `{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`
	return ref, digest.FromString(config), []byte(config), nil
}

func checkDockerfile(repo string) *dockerfile {
	data, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	must(err, "reading Dockerfile")

	// What `docker build --check` reports, all stages.
	source := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", data)
	source.Definition = &llb.Definition{}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), data, dockerfile2llb.ConvertOpt{
		SourceMap:    source,
		MetaResolver: offlineResolver{},
	})
	must(err, "linting Dockerfile")
	if results.Error != nil {
		check(false, "Dockerfile: BuildKit cannot build it: %s", results.Error.Message)
	}
	for _, w := range results.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		check(false, "Dockerfile:%d: %s: %s (%s)", line, w.RuleName, w.Detail, w.URL)
	}
	check(results.Error == nil && len(results.Warnings) == 0, "Dockerfile: BuildKit's build checks (docker build --check) pass")

	ast, err := parser.Parse(strings.NewReader(string(data)))
	must(err, "parsing Dockerfile")
	stages, _, err := instructions.Parse(ast.AST, nil)
	must(err, "parsing Dockerfile instructions")
	df := &dockerfile{stages: stages, final: stages[len(stages)-1], env: map[string]string{}}

	user, health := "", (*instructions.HealthCheckCommand)(nil)
	for _, cmd := range df.final.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.HealthCheckCommand:
			health = c
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				df.env[kv.Key] = kv.Value
			}
		case *instructions.RunCommand:
			df.installs = append(df.installs, aptInstalls(strings.Join(c.CmdLine, " "))...)
		}
	}
	name := strings.SplitN(user, ":", 2)[0]
	check(name != "" && name != "root" && name != "0", "Dockerfile: the image runs as a non-root user (USER %q)", user)
	check(health != nil && len(health.Health.Test) > 0 && health.Health.Test[0] != "NONE",
		"Dockerfile: the image has a HEALTHCHECK")

	// Every cargo build keeps the registry and target/ in cache mounts.
	builds := 0
	for _, stage := range stages {
		for _, cmd := range stage.Commands {
			run, ok := cmd.(*instructions.RunCommand)
			if !ok || !strings.Contains(strings.Join(run.CmdLine, " "), "cargo build") {
				continue
			}
			builds++
			must(run.Expand(func(word string) (string, error) { return word, nil }), "reading RUN flags")
			var cached []string
			for _, m := range instructions.GetMounts(run) {
				if m.Type == instructions.MountTypeCache {
					cached = append(cached, m.Target)
				}
			}
			hasRegistry := slices.ContainsFunc(cached, func(t string) bool { return strings.HasSuffix(t, "/registry") })
			hasTarget := slices.ContainsFunc(cached, func(t string) bool { return strings.HasSuffix(t, "/target") })
			check(hasRegistry && hasTarget, "Dockerfile: cargo build in stage %q caches the registry and target/ (cache mounts: %v)", stage.Name, cached)
		}
	}
	check(builds > 0, "Dockerfile: builds tidings with cargo")
	return df
}

var aptInstall = regexp.MustCompile(`apt-get\s+install\s+([^&;|]*)`)

func aptInstalls(cmdline string) []string {
	var pkgs []string
	for _, m := range aptInstall.FindAllStringSubmatch(cmdline, -1) {
		for _, word := range strings.Fields(m[1]) {
			if !strings.HasPrefix(word, "-") && word != "\\" {
				pkgs = append(pkgs, strings.SplitN(word, "=", 2)[0])
			}
		}
	}
	return pkgs
}

// ---- Build context ---------------------------------------------------------------------

func checkContext(repo string, df *dockerfile) {
	var patterns []string
	if f, err := os.Open(filepath.Join(repo, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		must(err, "reading .dockerignore")
	}
	pm, err := patternmatcher.New(patterns)
	must(err, "compiling .dockerignore")
	excluded := func(rel string) bool {
		ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		must(err, "matching .dockerignore")
		return ex
	}

	for _, junk := range []string{".git/HEAD", "target/debug/tidings", "data/log.redb", ".services/.lock", "tests/system/node_modules/x/index.js"} {
		check(excluded(junk), ".dockerignore: %s stays out of the build context", junk)
	}

	// Every path the Dockerfile copies from the context is in it, with files.
	var copied []string
	for _, stage := range df.stages {
		for _, cmd := range stage.Commands {
			var sources []string
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From == "" {
					sources = c.SourcePaths
				}
			case *instructions.AddCommand:
				sources = c.SourcePaths
			}
			for _, src := range sources {
				src = strings.TrimPrefix(filepath.Clean(src), "/")
				copied = append(copied, src)
				files := contextFiles(repo, src, excluded)
				check(files > 0, "build context: %s (copied by stage %q) has %d file(s)", src, stage.Name, files)
			}
		}
	}

	// Cargo loads the whole workspace: every member's manifest must be copied.
	manifest, err := os.ReadFile(filepath.Join(repo, "Cargo.toml"))
	must(err, "reading Cargo.toml")
	m := regexp.MustCompile(`(?s)\[workspace\].*?\bmembers\s*=\s*\[([^\]]*)\]`).FindSubmatch(manifest)
	check(m != nil, "Cargo.toml: workspace members found")
	if m != nil {
		for _, member := range regexp.MustCompile(`"([^"]+)"`).FindAllSubmatch(m[1], -1) {
			path := filepath.Join(string(member[1]), "Cargo.toml")
			in := slices.ContainsFunc(copied, func(src string) bool {
				return src == "." || src == path || strings.HasPrefix(path, src+"/")
			})
			check(in && !excluded(path), "Dockerfile: workspace member %s is copied into the build", member[1])
		}
	}
}

// contextFiles counts the files under rel that .dockerignore lets into the context.
func contextFiles(repo, rel string, excluded func(string) bool) int {
	n := 0
	_ = filepath.Walk(filepath.Join(repo, rel), func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		r, _ := filepath.Rel(repo, path)
		if excluded(r) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !info.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// ---- docker-compose.yml ----------------------------------------------------------------

func load(repo string, env []string, profiles []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repo, "docker-compose.yml")},
		cli.WithWorkingDirectory(repo),
		cli.WithName("tidings"),
		cli.WithEnv(env),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func checkCompose(repo string, df *dockerfile) {
	// README's route: the backends alone, without any TIDINGS_* variable set.
	backends, err := load(repo, nil, nil)
	if err == nil {
		backends, err = backends.WithSelectedServices([]string{"kafka", "scylla"})
	}
	why := ""
	if err != nil {
		why = ": " + err.Error()
	}
	check(err == nil, "docker-compose.yml: `docker compose up kafka scylla` loads with no variable set%s", why)

	project, err := load(repo, []string{"TIDINGS_JWT_SECRET=check"}, []string{"*"})
	must(err, "docker-compose.yml: loading every service (compose-go, Compose schema)")
	check(true, "docker-compose.yml: every service loads, every profile (compose-go, Compose JSON schema)")

	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		s := project.Services[name]
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			d := s.DependsOn[dep]
			want := "service_healthy"
			if project.Services[dep].Restart == "no" {
				want = "service_completed_successfully"
			}
			check(d.Condition == want, "compose %s: waits for %s to be %s (is %q)", name, dep, want, d.Condition)
		}
		if s.Restart == "no" {
			continue // runs once: nothing to probe
		}
		hc := s.HealthCheck
		check(hc != nil && !hc.Disable && len(hc.Test) > 0, "compose %s: has a health check", name)
		if s.Image == "tidings:latest" {
			checkTidingsService(name, s, df)
		}
	}

	// State lives in named volumes.
	for _, name := range []string{"kafka", "scylla", "standalone"} {
		s, ok := project.Services[name]
		named := ok && slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			_, declared := project.Volumes[v.Source]
			return v.Type == types.VolumeTypeVolume && declared
		})
		check(named, "compose %s: keeps its data in a named volume", name)
	}

	// The host reaches Kafka and Scylla where tidings looks by default, and Kafka
	// advertises an address that works from where the client is.
	kafka := project.Services["kafka"]
	check(published(kafka, 9092), "compose kafka: 9092 is published on the host")
	check(published(project.Services["scylla"], 9042), "compose scylla: 9042 is published on the host")
	advertised := map[string]bool{}
	for _, l := range strings.Split(value(kafka.Environment, "KAFKA_ADVERTISED_LISTENERS"), ",") {
		if _, addr, ok := strings.Cut(l, "://"); ok {
			advertised[addr] = true
		}
	}
	for _, p := range kafka.Ports {
		host := p.HostIP
		if host == "" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		addr := host + ":" + p.Published
		check(advertised[addr] || advertised["localhost:"+p.Published], "compose kafka: the host's %s is an advertised listener", addr)
	}
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		s := project.Services[name]
		if brokers := value(s.Environment, "TIDINGS_KAFKA_BROKERS"); brokers != "" {
			for _, b := range strings.Split(brokers, ",") {
				check(advertised[b], "compose %s: its broker %s is an advertised listener", name, b)
			}
		}
	}
}

// checkTidingsService: the probe asks the port the process listens on, and an edge has the
// time to drain before Docker kills it.
func checkTidingsService(name string, s types.ServiceConfig, df *dockerfile) {
	role := ""
	if len(s.Command) > 0 {
		role = s.Command[0]
	}
	listen := value(s.Environment, "TIDINGS_LISTEN")
	if listen == "" {
		listen = df.env["TIDINGS_LISTEN"]
	}
	if role == "processor" {
		listen = value(s.Environment, "TIDINGS_OPS_LISTEN")
	}
	if s.HealthCheck != nil && len(s.HealthCheck.Test) > 1 {
		probe := strings.Join(s.HealthCheck.Test[1:], " ")
		port := listen[strings.LastIndex(listen, ":")+1:]
		ok := false
		for _, word := range strings.Fields(probe) {
			if u, err := url.Parse(word); err == nil && u.Scheme == "http" && u.Port() == port {
				ok = true
			}
		}
		check(listen != "" && ok, "compose %s: the probe %q asks the port it listens on (%s)", name, probe, listen)
	}
	if role == "edge" || role == "standalone" {
		drain := 10 * time.Second
		if ms, err := strconv.Atoi(value(s.Environment, "TIDINGS_DRAIN_TIMEOUT_MS")); err == nil {
			drain = time.Duration(ms) * time.Millisecond
		}
		grace := 10 * time.Second // Docker's default
		if s.StopGracePeriod != nil {
			grace = time.Duration(*s.StopGracePeriod)
		}
		check(grace > drain, "compose %s: stop_grace_period %v outlasts the drain (%v)", name, grace, drain)
	}
}

func published(s types.ServiceConfig, port uint32) bool {
	return slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == port && p.Published == strconv.Itoa(int(port))
	})
}

func value(env types.MappingWithEquals, key string) string {
	if v := env[key]; v != nil {
		return *v
	}
	return ""
}

// ---- Runtime libraries -----------------------------------------------------------------

// Packages every debian:bookworm-slim has: libc6 and the libraries of dpkg and apt
// (`apt-cache show dpkg apt`), which the image cannot be without.
var baseImagePackages = []string{"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0", "libselinux1", "libmd0"}

func checkLibraries(binary string, df *dockerfile) {
	out, err := exec.Command("ldd", binary).CombinedOutput()
	must(err, "ldd "+binary+": "+string(out))
	have := append(slices.Clone(baseImagePackages), df.installs...)
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[1] != "=>" {
			continue // the vDSO and the dynamic loader
		}
		if fields[2] == "not" {
			check(false, "runtime libraries: %s is not found", fields[0])
			continue
		}
		owner, err := exec.Command("dpkg", "-S", fields[2]).Output()
		pkg := strings.SplitN(strings.TrimSpace(string(owner)), ":", 2)[0]
		if err != nil {
			check(false, "runtime libraries: no Debian package has %s", fields[2])
			continue
		}
		check(slices.Contains(have, pkg), "runtime libraries: %s is in the image (package %s)", fields[0], pkg)
	}
	fmt.Printf("info runtime libraries: packages the final stage installs: %v\n", df.installs)
}
