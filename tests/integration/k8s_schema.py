"""JSON Schemas (draft 4) for the Kubernetes, cert-manager, KEDA and Prometheus Operator objects that the Helm
chart renders, written by hand from their API references for the fields a chart can set, every object closed
(additionalProperties: false), so that a misspelt or misplaced field fails as `kubectl apply
--validate=strict` would make it fail.

Why a checked-in set: no Kubernetes OpenAPI document is available offline here. Debian has no
golang-k8s-api-dev (k8s.io/api's types, which could decode with DisallowUnknownFields); kubectl fetches its
schemas from a live API server; only KEDA's ScaledObject CRD is in shared/reference (test_chart.py validates
ScaledObjects against that one). The subset is small and each field is checked by name and type; value rules
that the API server adds (e.g. quantities' syntax) are checked where a pattern says so.

Sources: Kubernetes API reference v1.30 (core/v1, apps/v1, policy/v1), cert-manager.io/v1 (Certificate,
Issuer), keda.sh/v1alpha1 TriggerAuthentication, monitoring.coreos.com/v1 (ServiceMonitor, PodMonitor,
PrometheusRule).

    schema_for(obj) -> the schema for obj's apiVersion and kind, or None when this set has none
"""

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
INT_OR_STR = {"type": ["integer", "string"]}
STR_MAP = {"type": "object", "additionalProperties": STR}
QUANTITY = {"type": ["string", "integer", "number"], "pattern": r"^[+-]?[0-9.]+([eE][+-]?[0-9]+|[mkMGTPE]i?|Ki)?$"}
DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
DNS_LABEL = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
DNS_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
LABEL_VALUE = {"type": "string", "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", "maxLength": 63}


def obj(props, required=()):
    """A closed object: only these properties."""
    s = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        s["required"] = list(required)
    return s


def arr(items, min_items=0):
    s = {"type": "array", "items": items}
    if min_items:
        s["minItems"] = min_items
    return s


def enum(*values):
    return {"enum": list(values)}


LABELS = {"type": "object", "additionalProperties": LABEL_VALUE}
METADATA = obj({"name": DNS_NAME, "namespace": DNS_LABEL, "labels": LABELS, "annotations": STR_MAP},
               ["name"])
POD_METADATA = obj({"labels": LABELS, "annotations": STR_MAP})

LABEL_SELECTOR = obj({
    "matchLabels": LABELS,
    "matchExpressions": arr(obj({"key": STR, "operator": enum("In", "NotIn", "Exists", "DoesNotExist"),
                                 "values": arr(STR)}, ["key", "operator"])),
})

SECCOMP = obj({"type": enum("RuntimeDefault", "Localhost", "Unconfined"), "localhostProfile": STR}, ["type"])
POD_SECURITY_CONTEXT = obj({
    "runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT, "fsGroup": INT,
    "fsGroupChangePolicy": enum("OnRootMismatch", "Always"), "supplementalGroups": arr(INT),
    "seccompProfile": SECCOMP, "sysctls": arr(obj({"name": STR, "value": STR}, ["name", "value"])),
})
SECURITY_CONTEXT = obj({
    "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL, "runAsNonRoot": BOOL, "runAsUser": INT,
    "runAsGroup": INT, "privileged": BOOL, "seccompProfile": SECCOMP,
    "capabilities": obj({"add": arr(STR), "drop": arr(STR)}),
})

PROBE = obj({
    "httpGet": obj({"path": STR, "port": INT_OR_STR, "scheme": enum("HTTP", "HTTPS"), "host": STR,
                    "httpHeaders": arr(obj({"name": STR, "value": STR}, ["name", "value"]))}, ["port"]),
    "grpc": obj({"port": INT, "service": STR}, ["port"]),
    "tcpSocket": obj({"port": INT_OR_STR, "host": STR}, ["port"]),
    "initialDelaySeconds": INT, "periodSeconds": INT, "timeoutSeconds": INT, "failureThreshold": INT,
    "successThreshold": INT, "terminationGracePeriodSeconds": INT,
})
RESOURCES = obj({"requests": {"type": "object", "additionalProperties": QUANTITY},
                 "limits": {"type": "object", "additionalProperties": QUANTITY}})
ENV_VAR = obj({
    "name": STR, "value": STR,
    "valueFrom": obj({
        "secretKeyRef": obj({"name": STR, "key": STR, "optional": BOOL}, ["key"]),
        "configMapKeyRef": obj({"name": STR, "key": STR, "optional": BOOL}, ["key"]),
        "fieldRef": obj({"fieldPath": STR, "apiVersion": STR}, ["fieldPath"]),
        "resourceFieldRef": obj({"resource": STR, "containerName": STR, "divisor": QUANTITY}, ["resource"]),
    }),
}, ["name"])
CONTAINER = obj({
    "name": DNS_LABEL, "image": STR, "imagePullPolicy": enum("Always", "IfNotPresent", "Never"),
    "command": arr(STR), "args": arr(STR), "env": arr(ENV_VAR),
    "ports": arr(obj({"name": {"type": "string", "maxLength": 15}, "containerPort": INT,
                      "protocol": enum("TCP", "UDP", "SCTP")}, ["containerPort"])),
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE, "resources": RESOURCES,
    "securityContext": SECURITY_CONTEXT,
    "volumeMounts": arr(obj({"name": STR, "mountPath": STR, "readOnly": BOOL, "subPath": STR},
                            ["name", "mountPath"])),
}, ["name"])
KEY_PATHS = arr(obj({"key": STR, "path": STR, "mode": INT}, ["key", "path"]))
VOLUME = obj({
    "name": DNS_LABEL,
    "secret": obj({"secretName": STR, "defaultMode": INT, "optional": BOOL, "items": KEY_PATHS}),
    "configMap": obj({"name": STR, "defaultMode": INT, "optional": BOOL, "items": KEY_PATHS}),
    "emptyDir": obj({"medium": STR, "sizeLimit": QUANTITY}),
}, ["name"])
NODE_SELECTOR_TERM = obj({"matchExpressions": arr(obj({"key": STR, "operator": STR, "values": arr(STR)},
                                                      ["key", "operator"])),
                          "matchFields": arr(obj({"key": STR, "operator": STR, "values": arr(STR)},
                                                 ["key", "operator"]))})
POD_AFFINITY_TERM = obj({"labelSelector": LABEL_SELECTOR, "topologyKey": STR, "namespaces": arr(STR),
                         "namespaceSelector": LABEL_SELECTOR, "matchLabelKeys": arr(STR),
                         "mismatchLabelKeys": arr(STR)}, ["topologyKey"])
WEIGHTED_POD_AFFINITY_TERM = obj({"weight": INT, "podAffinityTerm": POD_AFFINITY_TERM},
                                 ["weight", "podAffinityTerm"])
POD_AFFINITY = obj({"requiredDuringSchedulingIgnoredDuringExecution": arr(POD_AFFINITY_TERM),
                    "preferredDuringSchedulingIgnoredDuringExecution": arr(WEIGHTED_POD_AFFINITY_TERM)})
AFFINITY = obj({
    "nodeAffinity": obj({
        "requiredDuringSchedulingIgnoredDuringExecution": obj({"nodeSelectorTerms": arr(NODE_SELECTOR_TERM)},
                                                              ["nodeSelectorTerms"]),
        "preferredDuringSchedulingIgnoredDuringExecution": arr(obj({"weight": INT, "preference":
                                                                    NODE_SELECTOR_TERM},
                                                                   ["weight", "preference"])),
    }),
    "podAffinity": POD_AFFINITY, "podAntiAffinity": POD_AFFINITY,
})
TOLERATION = obj({"key": STR, "operator": enum("Exists", "Equal"), "value": STR,
                  "effect": enum("NoSchedule", "PreferNoSchedule", "NoExecute"), "tolerationSeconds": INT})
TOPOLOGY_SPREAD = obj({"maxSkew": INT, "topologyKey": STR,
                       "whenUnsatisfiable": enum("DoNotSchedule", "ScheduleAnyway"),
                       "labelSelector": LABEL_SELECTOR, "minDomains": INT, "matchLabelKeys": arr(STR),
                       "nodeAffinityPolicy": enum("Honor", "Ignore"), "nodeTaintsPolicy": enum("Honor", "Ignore")},
                      ["maxSkew", "topologyKey", "whenUnsatisfiable"])
POD_SPEC = obj({
    "serviceAccountName": STR, "automountServiceAccountToken": BOOL, "imagePullSecrets": arr(obj({"name": STR})),
    "priorityClassName": STR, "terminationGracePeriodSeconds": INT, "securityContext": POD_SECURITY_CONTEXT,
    "affinity": AFFINITY, "topologySpreadConstraints": arr(TOPOLOGY_SPREAD), "nodeSelector": STR_MAP,
    "tolerations": arr(TOLERATION), "containers": arr(CONTAINER, 1), "initContainers": arr(CONTAINER),
    "volumes": arr(VOLUME),
}, ["containers"])


def top(api_version, kind, props, required=()):
    """A whole object: apiVersion and kind fixed, metadata, and the kind's own top-level fields."""
    p = {"apiVersion": enum(api_version), "kind": enum(kind), "metadata": METADATA}
    p.update(props)
    return obj(p, ["apiVersion", "kind", "metadata", *required])


DEPLOYMENT = top("apps/v1", "Deployment", {"spec": obj({
    "replicas": INT, "revisionHistoryLimit": INT, "minReadySeconds": INT, "progressDeadlineSeconds": INT,
    "strategy": obj({"type": enum("RollingUpdate", "Recreate"),
                     "rollingUpdate": obj({"maxUnavailable": INT_OR_STR, "maxSurge": INT_OR_STR})}),
    "selector": LABEL_SELECTOR,
    "template": obj({"metadata": POD_METADATA, "spec": POD_SPEC}, ["spec"]),
}, ["selector", "template"])}, ["spec"])

SERVICE = top("v1", "Service", {"spec": obj({
    "type": enum("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"), "clusterIP": STR,
    "selector": LABELS, "publishNotReadyAddresses": BOOL, "sessionAffinity": enum("None", "ClientIP"),
    "ports": arr(obj({"name": DNS_LABEL, "port": INT, "targetPort": INT_OR_STR, "protocol": enum("TCP", "UDP", "SCTP"),
                      "appProtocol": STR, "nodePort": INT}, ["port"]), 1),
})}, ["spec"])

SERVICE_ACCOUNT = top("v1", "ServiceAccount", {"automountServiceAccountToken": BOOL,
                                               "imagePullSecrets": arr(obj({"name": STR}))})
SECRET = top("v1", "Secret", {"type": STR, "data": STR_MAP, "stringData": STR_MAP, "immutable": BOOL})
CONFIG_MAP = top("v1", "ConfigMap", {"data": STR_MAP, "binaryData": STR_MAP, "immutable": BOOL})
PDB = top("policy/v1", "PodDisruptionBudget", {"spec": {
    **obj({"minAvailable": INT_OR_STR, "maxUnavailable": INT_OR_STR, "selector": LABEL_SELECTOR,
           "unhealthyPodEvictionPolicy": enum("IfHealthyBudget", "AlwaysAllow")}, ["selector"]),
    # The API server refuses both at once.
    "not": {"required": ["minAvailable", "maxUnavailable"]},
}}, ["spec"])

ISSUER_REF = obj({"name": STR, "kind": STR, "group": STR}, ["name"])
CERTIFICATE = top("cert-manager.io/v1", "Certificate", {"spec": obj({
    "secretName": STR, "commonName": STR, "dnsNames": arr(STR), "ipAddresses": arr(STR), "isCA": BOOL,
    "duration": DURATION, "renewBefore": DURATION,
    "usages": arr(enum("signing", "digital signature", "content commitment", "key encipherment",
                       "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
                       "decipher only", "any", "server auth", "client auth", "code signing", "email protection",
                       "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping",
                       "ocsp signing", "microsoft sgc", "netscape sgc")),
    "privateKey": obj({"algorithm": enum("RSA", "ECDSA", "Ed25519"), "size": INT,
                       "encoding": enum("PKCS1", "PKCS8"), "rotationPolicy": enum("Never", "Always")}),
    "issuerRef": ISSUER_REF,
    "secretTemplate": obj({"labels": LABELS, "annotations": STR_MAP}),
}, ["secretName", "issuerRef"])}, ["spec"])
ISSUER = top("cert-manager.io/v1", "Issuer", {"spec": {
    **obj({"selfSigned": obj({"crlDistributionPoints": arr(STR)}),
           "ca": obj({"secretName": STR, "crlDistributionPoints": arr(STR)}, ["secretName"])}),
    "minProperties": 1, "maxProperties": 1,
}}, ["spec"])

TRIGGER_AUTH = top("keda.sh/v1alpha1", "TriggerAuthentication", {"spec": obj({
    "secretTargetRef": arr(obj({"parameter": STR, "name": STR, "key": STR}, ["parameter", "name", "key"])),
    "env": arr(obj({"parameter": STR, "name": STR, "containerName": STR}, ["parameter", "name"])),
})}, ["spec"])

RELABEL = obj({"action": enum("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap",
                              "labeldrop", "labelkeep", "lowercase", "uppercase", "Replace", "Keep", "Drop",
                              "HashMod", "LabelMap", "LabelDrop", "LabelKeep"),
               "sourceLabels": arr(STR), "separator": STR, "targetLabel": STR, "regex": STR, "modulus": INT,
               "replacement": STR})
ENDPOINT_COMMON = {"port": STR, "path": STR, "scheme": enum("http", "https"), "interval": DURATION,
                   "scrapeTimeout": DURATION, "honorLabels": BOOL, "relabelings": arr(RELABEL),
                   "metricRelabelings": arr(RELABEL)}
NAMESPACE_SELECTOR = obj({"any": BOOL, "matchNames": arr(STR)})
SERVICE_MONITOR = top("monitoring.coreos.com/v1", "ServiceMonitor", {"spec": obj({
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": STR,
    "endpoints": arr(obj(ENDPOINT_COMMON), 1),
}, ["selector", "endpoints"])}, ["spec"])
POD_MONITOR = top("monitoring.coreos.com/v1", "PodMonitor", {"spec": obj({
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": STR,
    "podMetricsEndpoints": arr(obj(ENDPOINT_COMMON), 1),
}, ["selector", "podMetricsEndpoints"])}, ["spec"])
RULE = {
    **obj({"alert": STR, "record": STR, "expr": INT_OR_STR, "for": DURATION, "keep_firing_for": DURATION,
           "labels": STR_MAP, "annotations": STR_MAP}, ["expr"]),
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}
PROMETHEUS_RULE = top("monitoring.coreos.com/v1", "PrometheusRule", {"spec": obj({
    "groups": arr(obj({"name": STR, "interval": DURATION, "limit": INT, "partial_response_strategy": STR,
                       "rules": arr(RULE)}, ["name"])),
})}, ["spec"])

SCHEMAS = {(s["properties"]["apiVersion"]["enum"][0], s["properties"]["kind"]["enum"][0]): s
           for s in (DEPLOYMENT, SERVICE, SERVICE_ACCOUNT, SECRET, CONFIG_MAP, PDB, CERTIFICATE, ISSUER,
                     TRIGGER_AUTH, SERVICE_MONITOR, POD_MONITOR, PROMETHEUS_RULE)}


def schema_for(o):
    return SCHEMAS.get((o.get("apiVersion"), o.get("kind")))
