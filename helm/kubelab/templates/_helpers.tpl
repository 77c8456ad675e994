{{/*
Object-name prefix: the release name, unless it already contains the chart name
(the usual Helm convention), so `helm install kubelab ...` gives `kubelab-platform`.
*/}}
{{- define "kubelab.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; managed-by=kubelab is what the platform selects on. */}}
{{- define "kubelab.labels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: kubelab
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
Namespaces the hub works in, as a JSON list: the release namespace, the catalogue's jobs
namespace and rbac.extraNamespaces, without duplicates.
*/}}
{{- define "kubelab.namespaces" -}}
{{- $ns := list .Release.Namespace -}}
{{- with .Values.catalogue.jobs -}}
{{- if .namespace -}}{{- $ns = append $ns .namespace -}}{{- end -}}
{{- end -}}
{{- range .Values.rbac.extraNamespaces -}}{{- $ns = append $ns . -}}{{- end -}}
{{- $ns | uniq | toJson -}}
{{- end -}}

{{/* The namespace where jobs (and so LocalQueues) live. */}}
{{- define "kubelab.jobsNamespace" -}}
{{- $jobs := .Values.catalogue.jobs | default dict -}}
{{- $jobs.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Whether the hub needs Kueue read rights. */}}
{{- define "kubelab.kueueRbac" -}}
{{- if or .Values.kueue.enabled .Values.rbac.engines.kueue -}}true{{- end -}}
{{- end -}}

{{/* Pods of one job: they carry kubelab.io/job (the jobs service sets it on every rank). */}}
{{- define "kubelab.jobPodSelector" -}}
matchExpressions:
  - {key: kubelab.io/job, operator: Exists}
{{- end -}}

{{/* Notebook pods: KubeSpawner labels them component=singleuser-server. */}}
{{- define "kubelab.notebookPodSelector" -}}
matchLabels:
  component: singleuser-server
{{- end -}}

{{/* Egress to cluster DNS (port 53) in the DNS namespace, plus optional extra DNS addresses. */}}
{{- define "kubelab.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.namespaceLabels | nindent 10 }}
    {{- range .Values.networkPolicy.dns.ipBlocks }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/*
Egress to public addresses: everything but the private ranges and the API server, so that
neither the API server nor any pod (pods have private addresses) is reachable this way.
*/}}
{{- define "kubelab.internetEgress" -}}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          {{- range (concat .Values.networkPolicy.privateCIDRs .Values.networkPolicy.apiServerCIDRs | uniq) }}
          - {{ . }}
          {{- end }}
{{- end -}}
