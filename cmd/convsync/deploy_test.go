package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/storagetest"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
)

// The deploy/ files are what people copy into production: these tests
// parse them, check what convsync needs of a scheduler, and run their exact
// command lines against the simulated API, with only the base URL and the
// output paths substituted.

const (
	manifestPath = "../../deploy/kubernetes/cronjob.yaml"
	crontabPath  = "../../deploy/crontab"
	examplePath  = "../../deploy/convsync.example.toml"
)

// The parts of Kubernetes objects the tests look at.
type k8sObject struct {
	APIVersion string                `yaml:"apiVersion"`
	Kind       string                `yaml:"kind"`
	Metadata   struct{ Name string } `yaml:"metadata"`
	Data       map[string]string     `yaml:"data"` // ConfigMap
}

type cronJob struct {
	Spec struct {
		Schedule          string `yaml:"schedule"`
		TimeZone          string `yaml:"timeZone"`
		ConcurrencyPolicy string `yaml:"concurrencyPolicy"`
		Suspend           bool   `yaml:"suspend"`
		JobTemplate       struct {
			Spec struct {
				BackoffLimit     *int `yaml:"backoffLimit"`
				PodFailurePolicy *struct {
					Rules []struct {
						Action      string `yaml:"action"`
						OnExitCodes *struct {
							ContainerName string `yaml:"containerName"`
							Operator      string `yaml:"operator"`
							Values        []int  `yaml:"values"`
						} `yaml:"onExitCodes"`
					} `yaml:"rules"`
				} `yaml:"podFailurePolicy"`
				Template struct {
					Spec podSpec `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type podSpec struct {
	RestartPolicy string      `yaml:"restartPolicy"`
	Containers    []container `yaml:"containers"`
	Volumes       []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
		EmptyDir any `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// manifest is deploy/kubernetes/cronjob.yaml, parsed.
type manifest struct {
	configMaps map[string]map[string]string
	pvcs       map[string]bool
	cronJobs   map[string]cronJob
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	buf, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{configMaps: map[string]map[string]string{}, pvcs: map[string]bool{}, cronJobs: map[string]cronJob{}}
	dec := yaml.NewDecoder(bytes.NewReader(buf))
	for {
		var node yaml.Node
		if err := dec.Decode(&node); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: %v", manifestPath, err)
		}
		if len(node.Content) == 0 {
			continue // comments only
		}
		var obj k8sObject
		if err := node.Decode(&obj); err != nil {
			t.Fatalf("%s: %v", manifestPath, err)
		}
		if obj.Kind == "" || obj.APIVersion == "" || obj.Metadata.Name == "" {
			t.Fatalf("%s: a document without kind, apiVersion or name: %+v", manifestPath, obj)
		}
		switch obj.Kind {
		case "ConfigMap":
			m.configMaps[obj.Metadata.Name] = obj.Data
		case "PersistentVolumeClaim":
			m.pvcs[obj.Metadata.Name] = true
		case "CronJob":
			if obj.APIVersion != "batch/v1" {
				t.Errorf("CronJob %s: apiVersion %s, want batch/v1", obj.Metadata.Name, obj.APIVersion)
			}
			var cj cronJob
			if err := node.Decode(&cj); err != nil {
				t.Fatalf("CronJob %s: %v", obj.Metadata.Name, err)
			}
			m.cronJobs[obj.Metadata.Name] = cj
		default:
			t.Errorf("%s: unexpected %s %s", manifestPath, obj.Kind, obj.Metadata.Name)
		}
	}
	return m
}

// cronFieldRanges are the ranges of the five fields of a cron schedule.
var cronFieldRanges = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}

var cronTerm = regexp.MustCompile(`^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$`)

// checkSchedule checks a schedule is five cron fields, each a list of *,
// N, N-M, with an optional /STEP, within the field's range.
func checkSchedule(t *testing.T, what, schedule string) {
	t.Helper()
	fields := strings.Fields(schedule)
	if len(fields) != 5 {
		t.Errorf("%s: schedule %q is not 5 cron fields", what, schedule)
		return
	}
	for i, f := range fields {
		for _, term := range strings.Split(f, ",") {
			m := cronTerm.FindStringSubmatch(term)
			if m == nil {
				t.Errorf("%s: schedule %q: field %d %q is not cron syntax", what, schedule, i+1, f)
				continue
			}
			for _, n := range []string{m[2], m[3]} {
				if v, err := strconv.Atoi(n); n != "" && (err != nil || v < cronFieldRanges[i][0] || v > cronFieldRanges[i][1]) {
					t.Errorf("%s: schedule %q: field %d value %s out of range %v", what, schedule, i+1, n, cronFieldRanges[i])
				}
			}
			if m[4] == "0" {
				t.Errorf("%s: schedule %q: step 0", what, schedule)
			}
		}
	}
}

// mebibytes parses a Kubernetes memory quantity (Mi, Gi, M, G or bytes).
func mebibytes(q string) float64 {
	for _, u := range []struct {
		suffix string
		mib    float64
	}{{"Ki", 1.0 / 1024}, {"Mi", 1}, {"Gi", 1024}, {"k", 1000.0 / (1 << 20)}, {"M", 1e6 / (1 << 20)}, {"G", 1e9 / (1 << 20)}, {"", 1.0 / (1 << 20)}} {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			if v, err := strconv.ParseFloat(n, 64); err == nil {
				return v * u.mib
			}
		}
	}
	return -1
}

// configFlags returns export's flag set after loading a config file, or the
// refusal.
func configFlags(t *testing.T, env map[string]string, configPath string) (*flag.FlagSet, result) {
	t.Helper()
	return settled(t, env, "export", "--config", configPath)
}

// onVolume reports whether p lies under the mount of a persistent volume
// claim of the pod.
func onVolume(pod podSpec, c container, p string) bool {
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil && (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) {
				return true
			}
		}
	}
	return false
}

// deployedJob is one CronJob of the manifest, checked, with what it takes
// to run it.
type deployedJob struct {
	name       string
	pod        podSpec
	c          container
	configPath string            // the --config path in the container
	config     string            // the ConfigMap's TOML at that path
	mounts     map[string]string // mount path -> ConfigMap data key prefix
	settings   *flag.FlagSet     // export's flags once the config is loaded
}

// checkCronJob checks what convsync needs of a CronJob and returns it.
func checkCronJob(t *testing.T, m manifest, name string, cj cronJob) deployedJob {
	t.Helper()
	s := cj.Spec
	if s.ConcurrencyPolicy != "Forbid" {
		t.Errorf("%s: concurrencyPolicy %q, want Forbid", name, s.ConcurrencyPolicy)
	}
	checkSchedule(t, name, s.Schedule)
	job := s.JobTemplate.Spec
	if b := job.BackoffLimit; b == nil || *b < 1 || *b > 6 {
		t.Errorf("%s: backoffLimit %v, want a few retries (1..6)", name, b)
	}
	pod := job.Template.Spec
	if pod.RestartPolicy != "Never" && pod.RestartPolicy != "OnFailure" {
		t.Errorf("%s: restartPolicy %q, want Never or OnFailure", name, pod.RestartPolicy)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if p := job.PodFailurePolicy; p != nil {
		failsOnTwo := false
		for _, r := range p.Rules {
			if r.OnExitCodes != nil {
				if r.OnExitCodes.ContainerName != c.Name {
					t.Errorf("%s: podFailurePolicy names container %q, not %q", name, r.OnExitCodes.ContainerName, c.Name)
				}
				for _, v := range r.OnExitCodes.Values {
					if v == 75 && r.Action == "FailJob" {
						t.Errorf("%s: exit 75 (busy) fails the Job: it should be retried", name)
					}
					failsOnTwo = failsOnTwo || v == 2 && r.Action == "FailJob" && r.OnExitCodes.Operator == "In"
				}
			}
		}
		if !failsOnTwo {
			t.Errorf("%s: podFailurePolicy without FailJob on exit 2 (bad input: a retry cannot help)", name)
		}
		if pod.RestartPolicy != "Never" {
			t.Errorf("%s: podFailurePolicy needs restartPolicy Never", name)
		}
	}
	if len(c.Command) != 1 || path.Base(c.Command[0]) != "convsync" {
		t.Errorf("%s: command %q, want the convsync binary", name, c.Command)
	}
	if len(c.Args) < 3 || c.Args[0] != "export" {
		t.Fatalf("%s: args %q, want export --config FILE ...", name, c.Args)
	}
	secretOf := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != "" {
			secretOf[e.Name] = !e.ValueFrom.SecretKeyRef.Optional
		} else if _, secret := secretKey(e.Name); secret || strings.HasPrefix(e.Name, "TWILIO_") {
			t.Errorf("%s: %s is not from a Secret", name, e.Name)
		}
	}
	for _, v := range []string{"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"} {
		if !secretOf[v] {
			t.Errorf("%s: %s does not come from a (required) Secret key through secretKeyRef", name, v)
		}
	}
	if lim := mebibytes(c.Resources.Limits["memory"]); lim < 512 || lim > 4096 {
		t.Errorf("%s: memory limit %q, want one (1Gi is plenty)", name, c.Resources.Limits["memory"])
	}
	if req := mebibytes(c.Resources.Requests["memory"]); req <= 0 || c.Resources.Requests["cpu"] == "" {
		t.Errorf("%s: resource requests %v, want cpu and memory", name, c.Resources.Requests)
	}

	// --config names a file of a mounted ConfigMap.
	d := deployedJob{name: name, pod: pod, c: c, mounts: map[string]string{}}
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			d.configPath = c.Args[i+1]
		}
	}
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			data, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("%s: volume %s: no ConfigMap %s in the manifest", name, v.Name, v.ConfigMap.Name)
			}
			d.mounts[vm.MountPath] = v.ConfigMap.Name
			if path.Dir(d.configPath) == path.Clean(vm.MountPath) {
				d.config, ok = data[path.Base(d.configPath)]
				if !ok {
					t.Errorf("%s: ConfigMap %s has no key %s for --config %s", name, v.ConfigMap.Name, path.Base(d.configPath), d.configPath)
				}
			}
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.PersistentVolumeClaim != nil && !m.pvcs[v.PersistentVolumeClaim.ClaimName] {
				t.Errorf("%s: volume %s: no PersistentVolumeClaim %s in the manifest", name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	if d.config == "" {
		t.Fatalf("%s: --config %q is not a file of a mounted ConfigMap", name, d.configPath)
	}

	// The ConfigMap's TOML is accepted by convsync's config loader, and
	// keeps the outputs and the staging on the persistent volume.
	cfg := writeFile(t, t.TempDir(), path.Base(d.configPath), d.config)
	fs, r := configFlags(t, nil, cfg)
	if r.code != 0 {
		t.Fatalf("%s: convsync refuses the ConfigMap's %s: %s", name, path.Base(d.configPath), r.stderr)
	}
	d.settings = fs
	duckdb, lake, staging := flagValue(t, fs, "duckdb"), flagValue(t, fs, "parquet"), flagValue(t, fs, "staging")
	if duckdb == "" && lake == "" {
		t.Errorf("%s: the config names no output", name)
	}
	for _, p := range []string{duckdb, lake, staging} {
		if p != "" && !strings.Contains(p, "://") && !onVolume(pod, c, p) {
			t.Errorf("%s: %s is not on the persistent volume", name, p)
		}
	}
	if strings.Contains(lake, "://") && (staging == "" || !onVolume(pod, c, staging)) {
		t.Errorf("%s: Parquet goes to a bucket, but staging %q is not on the persistent volume (the default, the user's cache folder, dies with the pod)", name, staging)
	}
	return d
}

// runDeployed runs a CronJob's exact command line in-process, its file
// system rooted at root: the ConfigMaps are written where they are mounted,
// the container's environment is set (the Secret's keys from the simulated
// API), and CONVSYNC_ variables point the outputs of the config under root
// and the base URL at the simulated API.
func runDeployed(t *testing.T, d deployedJob, m manifest, root string, srv *fakeapi.Server, extraEnv, extraSecrets map[string]string) (result, map[string]string) {
	t.Helper()
	under := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	for mountPath, cmName := range d.mounts {
		for key, data := range m.configMaps[cmName] {
			if err := os.MkdirAll(under(mountPath), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, under(mountPath), key, data)
		}
	}
	clearSettingsEnv(t)
	creds := srv.Credentials()
	secrets := map[string]string{"TWILIO_ACCOUNT_SID": creds.AccountSID, "TWILIO_AUTH_TOKEN": creds.AuthToken}
	for k, v := range extraSecrets {
		secrets[k] = v
	}
	for _, e := range d.c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			t.Setenv(e.Name, secrets[e.Name]) // an optional key the Secret lacks: unset
		case strings.HasPrefix(e.Value, "/"):
			t.Setenv(e.Name, under(e.Value))
		default:
			t.Setenv(e.Name, e.Value)
		}
	}
	t.Setenv("TWILIO_API_KEY", "")
	t.Setenv("TWILIO_API_SECRET", "")
	// The outputs the config names, moved under root through the
	// environment, which wins over the file.
	outputs := map[string]string{}
	t.Setenv("CONVSYNC_BASE_URL", srv.URL())
	for _, name := range []string{"duckdb", "parquet", "staging"} {
		if p := flagValue(t, d.settings, name); p != "" {
			outputs[name] = under(p)
			if strings.Contains(p, "://") {
				outputs[name] = extraEnv[envName(name)]
			}
			t.Setenv(envName(name), outputs[name])
			if name != "parquet" || !strings.Contains(p, "://") {
				os.MkdirAll(filepath.Dir(under(p)), 0o755) // the volume's folders
			}
		}
	}
	for k, v := range extraEnv {
		t.Setenv(k, v)
	}
	args := append([]string{}, d.c.Args...)
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			args[i] = under(a)
		}
	}
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String(), took: time.Since(start)}, outputs
}

// checkOutputs checks a run wrote the simulated account into the outputs.
func checkOutputs(t *testing.T, want testkit.Tables, outputs map[string]string) {
	t.Helper()
	if db := outputs["duckdb"]; db != "" {
		got := testkit.Query(t, db, "SELECT count(*) AS n FROM participants")[0]["n"]
		if got != int64(len(want["participants"])) {
			t.Errorf("DuckDB %s holds %v participants, want %d", db, got, len(want["participants"]))
		}
	}
	if lake := outputs["parquet"]; lake != "" && !strings.Contains(lake, "://") {
		for _, tab := range schemas.Export {
			files, _ := filepath.Glob(filepath.Join(lake, tab.Name, "snapshot_date=*", "*.parquet"))
			if len(files) == 0 {
				t.Errorf("no Parquet files for %s under %s", tab.Name, lake)
			}
		}
	}
}

// TestDeployKubernetes checks the CronJobs of deploy/kubernetes/cronjob.yaml
// and runs each one's exact command line against the simulated API.
func TestDeployKubernetes(t *testing.T) {
	m := readManifest(t)
	if len(m.cronJobs) == 0 {
		t.Fatal("no CronJob in the manifest")
	}
	active := 0
	for name, cj := range m.cronJobs {
		if !cj.Spec.Suspend {
			active++
		}
		t.Run(name, func(t *testing.T) {
			d := checkCronJob(t, m, name, cj)
			ds, srv := startAPI(t, fakeapi.Faults{})
			want := testkit.Expected(t, ds, srv)
			root := t.TempDir()
			extra, extraSecrets := map[string]string{}, map[string]string{}
			bucket := strings.Contains(flagValue(t, d.settings, "parquet"), "://")
			var s3 *storagetest.Server
			if bucket {
				s3 = storagetest.S3(t) // skips where the server cannot be had, fails in CI
				s3.SetEnv(t)
				extra["CONVSYNC_PARQUET"] = lakeURL(s3)
				extraSecrets = s3.Env // what the Secret convsync-aws would hold
			}
			r, outputs := runDeployed(t, d, m, root, srv, extra, extraSecrets)
			if r.code != 0 {
				t.Fatalf("%s: exit %d: %s", strings.Join(d.c.Args, " "), r.code, r.stderr)
			}
			checkOutputs(t, want, outputs)
			if bucket {
				if keys := objects(t, s3.Open(t, "")); len(keys) < len(schemas.Export) {
					t.Errorf("the bucket holds %v", keys)
				}
				if st, err := os.Stat(outputs["staging"]); err != nil || !st.IsDir() {
					t.Errorf("no staging folder on the volume at %s: %v", outputs["staging"], err)
				}
			}
			t.Logf("%s ran in %s", strings.Join(append(d.c.Command, d.c.Args...), " "), r.took.Round(time.Millisecond))
		})
	}
	if active != 1 {
		t.Errorf("%d CronJobs are active: want exactly one (they share the DuckDB file), the others suspended", active)
	}
}

// crontabEntry is the export line of deploy/crontab.
type crontabEntry struct {
	env      []string // the crontab's VAR=value lines
	schedule string
	user     string
	command  string
	line     string
}

func readCrontab(t *testing.T) crontabEntry {
	t.Helper()
	buf, err := os.ReadFile(crontabPath)
	if err != nil {
		t.Fatal(err)
	}
	var e crontabEntry
	assign := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	n := 0
	for _, l := range strings.Split(string(buf), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case assign.MatchString(l):
			e.env = append(e.env, l)
		default:
			n++
			f := strings.Fields(l)
			if len(f) < 7 {
				t.Fatalf("crontab line %q: want 5 schedule fields, a user and a command", l)
			}
			e.schedule, e.user, e.line = strings.Join(f[:5], " "), f[5], l
			e.command = strings.TrimSpace(strings.SplitN(l, " "+f[5]+" ", 2)[1])
		}
	}
	if n != 1 {
		t.Fatalf("crontab has %d entries, want 1", n)
	}
	return e
}

// TestDeployCrontab checks the line of deploy/crontab and runs it, as cron
// would (sh -c, cron's small environment), with the example config: only
// the paths of the config file, the environment file, the log, the binary
// and the outputs are moved under a temporary root, and the environment
// file points the base URL at the simulated API.
func TestDeployCrontab(t *testing.T) {
	e := readCrontab(t)
	checkSchedule(t, "crontab", e.schedule)
	if e.user == "root" {
		t.Errorf("crontab runs convsync as root")
	}
	for _, want := range []string{"convsync export", "--config /etc/convsync/convsync.toml", ". /etc/convsync/convsync.env", "set -a", ">>/var/log/convsync/"} {
		if !strings.Contains(e.command, want) {
			t.Errorf("crontab command %q lacks %q", e.command, want)
		}
	}
	if strings.Contains(e.command, "flock") || strings.Contains(e.command, "%") {
		t.Errorf("crontab command %q: no flock (convsync locks its outputs), no %% (cron makes it a newline)", e.command)
	}

	ds, srv := startAPI(t, fakeapi.Faults{})
	want := testkit.Expected(t, ds, srv)
	root := t.TempDir()
	under := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/etc/convsync", "/var/log/convsync", "/var/lib/convsync"} {
		os.MkdirAll(under(d), 0o755)
	}
	writeFile(t, under("/etc/convsync"), "convsync.toml", string(example))
	var doc map[string]any
	if _, err := toml.Decode(string(example), &doc); err != nil {
		t.Fatal(err)
	}
	db, lake := under(doc["duckdb"].(string)), under(doc["parquet"].(string))
	creds := srv.Credentials()
	writeFile(t, under("/etc/convsync"), "convsync.env", strings.Join([]string{
		"TWILIO_ACCOUNT_SID='" + creds.AccountSID + "'",
		"TWILIO_AUTH_TOKEN='" + creds.AuthToken + "'",
		"CONVSYNC_BASE_URL='" + srv.URL() + "'",
		"CONVSYNC_DUCKDB='" + db + "'",
		"CONVSYNC_PARQUET='" + lake + "'",
	}, "\n")+"\n")
	cmd := e.command
	for _, p := range []string{"/etc/convsync/", "/var/log/convsync/"} {
		cmd = strings.ReplaceAll(cmd, p, under(p)+"/")
	}
	cmd = regexp.MustCompile(`(^|[ ;&|])(/usr/local/bin/)?convsync `).ReplaceAllString(cmd, "${1}"+binPath+" ")
	shell := "/bin/sh"
	env := []string{"HOME=" + root, "LOGNAME=" + e.user}
	for _, a := range e.env {
		if v, ok := strings.CutPrefix(a, "SHELL="); ok {
			shell = v
		}
		env = append(env, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, shell, "-c", cmd)
	sh.Env = env
	out, err := sh.CombinedOutput()
	logs, _ := filepath.Glob(under("/var/log/convsync/*"))
	var log []byte
	if len(logs) == 1 {
		log, _ = os.ReadFile(logs[0])
	}
	if err != nil {
		t.Fatalf("crontab command: %v\n%s\nlog:\n%s", err, out, log)
	}
	if len(out) > 0 {
		t.Errorf("the crontab command writes outside its log (cron would mail it): %s", out)
	}
	if len(logs) != 1 || !bytes.Contains(log, []byte(`"run_id":`)) {
		t.Errorf("log files %v, want one holding the run's JSON log:\n%s", logs, log)
	}
	if bytes.Contains(log, []byte(creds.AuthToken)) {
		t.Error("the log holds the auth token")
	}
	checkOutputs(t, want, map[string]string{"duckdb": db, "parquet": lake})
}

// TestDeployExampleConfig: every key of deploy/convsync.example.toml is
// accepted, active or commented out (each commented-out line on its own,
// uncommented), and every flag of export appears in it.
func TestDeployExampleConfig(t *testing.T) {
	buf, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fs, r := configFlags(t, nil, examplePath)
	if r.code != 0 {
		t.Fatalf("export --config %s: exit %d: %s", examplePath, r.code, r.stderr)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(buf), &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range doc {
		if got := flagValue(t, fs, k); got != v {
			t.Errorf("--%s = %q, want the file's %v", k, got, v)
		}
	}
	commented := regexp.MustCompile(`^# ([a-z][a-z-]*) = (.*)$`)
	seen := map[string]bool{}
	for k := range doc {
		seen[k] = true
	}
	lines := strings.Split(string(buf), "\n")
	for i, l := range lines {
		mm := commented.FindStringSubmatch(l)
		if mm == nil {
			continue
		}
		seen[mm[1]] = true
		// The file with this line uncommented, replacing an active line
		// of the same key.
		var variant []string
		for j, o := range lines {
			switch {
			case j == i:
				variant = append(variant, strings.TrimPrefix(o, "# "))
			case strings.HasPrefix(o, mm[1]+" = "):
			default:
				variant = append(variant, o)
			}
		}
		p := writeFile(t, dir, "variant.toml", strings.Join(variant, "\n"))
		if _, r := configFlags(t, nil, p); r.code != 0 {
			t.Errorf("line %d, uncommented, is refused: %s", i+1, r.lastStderrLine())
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != configFlag && !seen[f.Name] {
			t.Errorf("the example config does not show export's --%s", f.Name)
		}
	})
}

// TestREADMEShowsTheDeployFiles keeps README's "Run it every night" in step
// with deploy/.
func TestREADMEShowsTheDeployFiles(t *testing.T) {
	buf, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(buf)
	i := strings.Index(doc, "\n## Run it every night\n")
	if i < 0 {
		t.Fatal("README has no section \"## Run it every night\"")
	}
	section := doc[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	e := readCrontab(t)
	if !strings.Contains(section, e.line) {
		t.Errorf("README's Run it every night does not show the crontab line of deploy/crontab:\n%s", e.line)
	}
	for _, want := range []string{"deploy/kubernetes/cronjob.yaml", "concurrencyPolicy: Forbid", "time() - convsync_last_success_timestamp_seconds > 26*3600"} {
		if !strings.Contains(section, want) {
			t.Errorf("README's Run it every night does not mention %q", want)
		}
	}
}
