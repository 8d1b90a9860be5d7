"""Drives every Compute Nest operation Berth implements through Alibaba Cloud's official SDK
(alibabacloud-computenestsupplier20210521) against `berth serve`, and the signature checks with
the SDK's own signing code. Run by tests/tests/computenest.rs; prints one JSON line of facts for
the Rust side on success, exits non-zero naming the first failed check otherwise.

Environment: BERTH_URL, BERTH_TOKEN (an account token of the provider), CN_KEY_ID, CN_KEY_SECRET,
REGISTRY_HOST, ACCOUNT.
"""
import datetime
import json
import os
import sys
import time
import uuid

import requests
from alibabacloud_computenestsupplier20210521 import models as m
from alibabacloud_computenestsupplier20210521.client import Client
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.models import Config

URL = os.environ["BERTH_URL"]
ENDPOINT = URL.split("://", 1)[1]
TOKEN = os.environ["BERTH_TOKEN"]
KEY_ID, KEY_SECRET = os.environ["CN_KEY_ID"], os.environ["CN_KEY_SECRET"]
REGISTRY = os.environ["REGISTRY_HOST"]
ACCOUNT = os.environ["ACCOUNT"]
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def client(key_id=KEY_ID, secret=KEY_SECRET):
    return Client(Config(access_key_id=key_id, access_key_secret=secret, endpoint=ENDPOINT, protocol="http"))


cn = client()


def check(condition, what, detail=None):
    if not condition:
        print(f"FAILED: {what}" + (f": {detail}" if detail is not None else ""), file=sys.stderr)
        sys.exit(1)


def refused(call, code, what):
    try:
        answer = call()
    except Exception as e:  # the SDK raises its own exception types, each with .code
        check(getattr(e, "code", None) == code, what, f"{type(e).__name__} code={getattr(e, 'code', None)} {e}")
        return e
    check(False, what, f"succeeded: {answer.body.to_map()}")


def prop(body):
    return json.loads(body.artifact_property)


def settle(artifact, version, timeout=60):
    start = time.time()
    while True:
        body = cn.get_artifact(m.GetArtifactRequest(artifact_id=artifact, artifact_version=version)).body
        if body.status != "Scanning":
            return body
        check(time.time() - start < timeout, f"{artifact} {version} still Scanning")
        time.sleep(0.2)


def acr(repo, tag):
    return m.CreateArtifactRequestArtifactProperty(repo_name=repo, tag=tag, repo_type="Private", region_id="cn-hangzhou")


facts = {}

# --- artifacts: create, drafts, update, release (publish check), versions ------------------
check(cn.list_artifacts(m.ListArtifactsRequest()).body.total_count == 0, "no artifacts at first")
created = cn.create_artifact(m.CreateArtifactRequest(
    artifact_type="AcrImage", name="web_app", version_name="first draft", description="the web front end",
    artifact_property=acr("web", "v1"), support_region_ids=["cn-hangzhou"],
    tag=[m.CreateArtifactRequestTag(key="team", value="web")])).body
check(created.artifact_id == "web_app" and created.status == "Created" and created.artifact_version == "draft",
      "CreateArtifact makes a Created draft", created.to_map())
check(prop(created)["RepoName"] == "web" and prop(created)["Tag"] == "v1", "ArtifactProperty answered", created.artifact_property)
refused(lambda: cn.create_artifact(m.CreateArtifactRequest(artifact_type="AcrImage", name="web_app", artifact_property=acr("web", "v1"))),
        "EntityAlreadyExist.Artifact", "a second artifact of the same name")
refused(lambda: cn.create_artifact(m.CreateArtifactRequest(artifact_id="web_app", artifact_type="AcrImage", artifact_property=acr("web", "v1"))),
        "EntityAlreadyExist.DraftArtifact", "a second draft")
refused(lambda: cn.create_artifact(m.CreateArtifactRequest(artifact_type="AcrImage", artifact_property=acr("web", "v1"))),
        "MissingParameter", "CreateArtifact without Name")
refused(lambda: cn.create_artifact(m.CreateArtifactRequest(artifact_type="EcsImage", name="vm_image", artifact_property=acr("web", "v1"))),
        "InvalidParameter", "an artifact type Berth does not map")
refused(lambda: cn.create_artifact(m.CreateArtifactRequest(artifact_type="AcrImage", name="no_repo", artifact_property=m.CreateArtifactRequestArtifactProperty(tag="v1"))),
        "MissingParameter", "an AcrImage without RepoName")

updated = cn.update_artifact(m.UpdateArtifactRequest(
    artifact_id="web_app", version_name="second draft", description="the web front end, updated",
    artifact_property=m.UpdateArtifactRequestArtifactProperty(repo_name="web", tag="missing"))).body
check(updated.status == "Created" and prop(updated)["Tag"] == "missing" and updated.version_name == "second draft",
      "UpdateArtifact changes the draft", updated.to_map())
draft = cn.get_artifact(m.GetArtifactRequest(artifact_id="", artifact_name="web_app", artifact_version="draft")).body
check(draft.description == "the web front end, updated" and prop(draft)["Tag"] == "missing" and draft.max_version == 0,
      "GetArtifact by name reads the draft", draft.to_map())
check([t.to_map() for t in draft.tags] == [{"Key": "team", "Value": "web"}], "tags kept", draft.to_map())

released = cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="web_app")).body
check(released.status == "Scanning" and released.artifact_version == "1", "ReleaseArtifact starts the scan", released.to_map())
refused(lambda: cn.get_artifact(m.GetArtifactRequest(artifact_id="web_app", artifact_version="draft")),
        "EntityNotExist.ArtifactVersion", "the released draft is gone")
refused(lambda: cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="web_app")),
        "EntityNotExist.ArtifactVersion", "no draft to release")
refused(lambda: cn.update_artifact(m.UpdateArtifactRequest(artifact_id="web_app", version_name="x")),
        "OperationDenied", "no draft to update")
failed = settle("web_app", "1")
check(failed.status == "ScanFailed" and "not_found" in failed.status_detail, "a missing tag fails the scan", failed.to_map())

cn.create_artifact(m.CreateArtifactRequest(artifact_id="web_app", artifact_type="AcrImage", version_name="good", artifact_property=acr("web", "v1")))
cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="web_app"))
good = settle("web_app", "2")
check(good.status == "Available" and good.max_version == 2 and good.status_detail == "", "a pushed image is Available", good.to_map())
latest = cn.get_artifact(m.GetArtifactRequest(artifact_id="web_app")).body
check(latest.artifact_version == "2", "GetArtifact without a version: the newest", latest.to_map())

versions = cn.list_artifact_versions(m.ListArtifactVersionsRequest(artifact_id="web_app")).body
check([(v.artifact_version, v.status) for v in versions.artifacts] == [("2", "Available"), ("1", "ScanFailed")],
      "ListArtifactVersions, newest first", versions.to_map())
first = cn.list_artifact_versions(m.ListArtifactVersionsRequest(artifact_id="web_app", max_results=1)).body
check(len(first.artifacts) == 1 and first.next_token and first.total_count == 2, "versions page 1", first.to_map())
second = cn.list_artifact_versions(m.ListArtifactVersionsRequest(artifact_id="web_app", max_results=1, next_token=first.next_token)).body
check([v.artifact_version for v in second.artifacts] == ["1"] and not second.next_token, "versions page 2", second.to_map())
available = cn.list_artifact_versions(m.ListArtifactVersionsRequest(
    artifact_id="web_app", filters=[m.ListArtifactVersionsRequestFilters(name="Status", values=["Available"])])).body
check([v.artifact_version for v in available.artifacts] == ["2"], "Filters by Status", available.to_map())
refused(lambda: cn.list_artifact_versions(m.ListArtifactVersionsRequest(artifact_id="nothing_here")),
        "EntityNotExist.Artifact", "versions of an unknown artifact")
refused(lambda: cn.list_artifact_versions(m.ListArtifactVersionsRequest(artifact_id="web_app", max_results=500)),
        "InvalidParameter", "a page over 100")

# HelmChart and File artifacts.
cn.create_artifact(m.CreateArtifactRequest(artifact_type="HelmChart", name="web_chart", description="the web chart",
                                          artifact_property=acr("charts/web", "0.1.0")))
cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="web_chart"))
chart = settle("web_chart", "1")
check(chart.status == "Available" and chart.artifact_type == "HelmChart", "a pushed chart is Available", chart.to_map())
not_chart = cn.create_artifact(m.CreateArtifactRequest(artifact_type="HelmChart", name="not_chart", artifact_property=acr("web", "v1"))).body
cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="not_chart"))
scanned = settle("not_chart", "1")
check(scanned.status == "ScanFailed" and "not_a_chart" in scanned.status_detail, "an image is not a chart", scanned.to_map())

file_draft = cn.create_artifact(m.CreateArtifactRequest(artifact_type="File", name="bundle", description="a bundle of files",
    artifact_property=m.CreateArtifactRequestArtifactProperty(url="https://bucket.oss-cn-hangzhou.aliyuncs.com/x/app.tar.gz"))).body
check(file_draft.status == "Created", "a File draft", file_draft.to_map())
file_released = cn.release_artifact(m.ReleaseArtifactRequest(artifact_id="bundle")).body
upload = prop(file_released)["Url"]
check(file_released.status == "Scanning" and upload == f"{URL}/v1/packages/bundle/versions/v_1/file", "a File waits for its bytes", file_released.to_map())
put = requests.put(upload, data=b"hello", headers=BEARER)
check(put.status_code == 200, "upload the File's bytes", put.text)
check(settle("bundle", "1").status == "Available", "the upload makes it Available")

listed = cn.list_artifacts(m.ListArtifactsRequest()).body
check([a.name for a in listed.artifacts] == ["bundle", "not_chart", "web_app", "web_chart"] and listed.total_count == 4, "ListArtifacts, by name", listed.to_map())
web = [a for a in listed.artifacts if a.name == "web_app"][0]
check(web.max_version == "2" and web.status == "Available" and web.artifact_type == "AcrImage", "a listed artifact", web.to_map())
page1 = cn.list_artifacts(m.ListArtifactsRequest(max_results=3)).body
page2 = cn.list_artifacts(m.ListArtifactsRequest(max_results=3, next_token=page1.next_token)).body
check(len(page1.artifacts) == 3 and [a.name for a in page2.artifacts] == ["web_chart"] and not page2.next_token, "ListArtifacts pages", (page1.to_map(), page2.to_map()))
by_name = cn.list_artifacts(m.ListArtifactsRequest(filter=[m.ListArtifactsRequestFilter(name="Name", values=["web_app"])])).body
check([a.artifact_id for a in by_name.artifacts] == ["web_app"], "Filter Name (exact)", by_name.to_map())
charts = cn.list_artifacts(m.ListArtifactsRequest(filter=[m.ListArtifactsRequestFilter(name="ArtifactType", values=["HelmChart"])])).body
check([a.name for a in charts.artifacts] == ["not_chart", "web_chart"], "Filter ArtifactType", charts.to_map())
tagged = cn.list_artifacts(m.ListArtifactsRequest(tag=[m.ListArtifactsRequestTag(key="team", value="web")])).body
check([a.name for a in tagged.artifacts] == ["web_app"], "Tag filter", tagged.to_map())
refused(lambda: cn.get_artifact(m.GetArtifactRequest(artifact_id="nothing_here")), "EntityNotExist.Artifact", "an unknown artifact")
refused(lambda: cn.get_artifact(m.GetArtifactRequest(artifact_id="web_app", artifact_version="9")), "EntityNotExist.ArtifactVersion", "an unknown version")

# --- the registry: credentials, repositories, tags ----------------------------------------
creds = cn.get_artifact_repository_credentials(m.GetArtifactRepositoryCredentialsRequest(artifact_type="AcrImage", deploy_region_id="cn-hangzhou")).body
resource = creds.available_resources[0]
check(creds.credentials.username == ACCOUNT and creds.credentials.password and resource.repository_name == REGISTRY
      and resource.path == f"{REGISTRY}/{ACCOUNT}/*" and creds.expire_date, "repository credentials", creds.available_resources[0].to_map())
facts["push_username"] = creds.credentials.username
facts["push_password"] = creds.credentials.password
refused(lambda: cn.get_artifact_repository_credentials(m.GetArtifactRepositoryCredentialsRequest(artifact_type="File")),
        "InvalidParameter", "File repositories are Berth's own")
repos = cn.list_acr_image_repositories(m.ListAcrImageRepositoriesRequest(artifact_type="AcrImage", repo_name="web")).body
check(sorted(r.repo_name for r in repos.repositories) == ["charts/web", "web"], "ListAcrImageRepositories", repos.to_map())
web_repo = [r for r in repos.repositories if r.repo_name == "web"][0]
tags = cn.list_acr_image_tags(m.ListAcrImageTagsRequest(repo_id=web_repo.repo_id, artifact_type="AcrImage")).body
check([i.tag for i in tags.images] == ["v1"], "ListAcrImageTags", tags.to_map())
refused(lambda: cn.list_acr_image_tags(m.ListAcrImageTagsRequest(repo_id="nope", artifact_type="AcrImage")),
        "EntityNotExist.Repository", "tags of a repository that does not exist")

# --- services ------------------------------------------------------------------------------
def deploy_metadata(relations):
    return json.dumps({
        "TemplateConfigs": [{"Name": "ACK", "Url": "https://bucket.oss-cn-hangzhou.aliyuncs.com/t/ack.yaml"}],
        "SupplierDeployMetadata": relations,
    })


acr_relation = {"AcrImageArtifactRelation": {"{{ computenest::acrimage::web }}": {"ArtifactId": "web_app", "ArtifactVersion": "draft"}}}
info = [m.CreateServiceRequestServiceInfo(locale="zh-CN", name="sdk-shop", short_description="a shop")]
made = cn.create_service(m.CreateServiceRequest(region_id="cn-hangzhou", deploy_type="ros", service_type="private",
                                                service_info=info, deploy_metadata=deploy_metadata(acr_relation))).body
check(made.service_id == "sdk-shop" and made.version == "draft", "CreateService", made.to_map())
refused(lambda: cn.create_service(m.CreateServiceRequest(service_info=info, deploy_metadata=deploy_metadata(acr_relation))),
        "EntityAlreadyExist.Service", "a second service of that name")
bad = {"AcrImageArtifactRelation": {"{{ computenest::acrimage::web }}": {"ArtifactId": "nothing_here", "ArtifactVersion": "draft"}}}
refused(lambda: cn.create_service(m.CreateServiceRequest(service_info=[m.CreateServiceRequestServiceInfo(name="bad-shop")], deploy_metadata=deploy_metadata(bad))),
        "EntityNotExist.Artifact", "a relation to an artifact that does not exist")
found = cn.list_services(m.ListServicesRequest(all_versions=True, filter=[
    m.ListServicesRequestFilter(name="Name", value=["sdk-shop"]), m.ListServicesRequestFilter(name="Version", value=["draft"])])).body
check([s.service_id for s in found.services] == ["sdk-shop"], "ListServices by name", found.to_map())
none = cn.list_services(m.ListServicesRequest(filter=[m.ListServicesRequestFilter(name="Name", value=["other"])])).body
check(none.services == [] and none.total_count == 0, "ListServices finds nothing else", none.to_map())
got = cn.get_service(m.GetServiceRequest(region_id="cn-hangzhou", service_id="sdk-shop", service_version="draft")).body
metadata = json.loads(got.deploy_metadata)
check(metadata["SupplierDeployMetadata"]["AcrImageArtifactRelation"] == {"{{ computenest::acrimage::web }}": {"ArtifactId": "web_app", "ArtifactVersion": "draft"}},
      "GetService answers the relation", got.deploy_metadata)
check("ACK" in got.status_detail and "not received" in got.status_detail, "the template body is named as not received", got.status_detail)
template_url = metadata["TemplateConfigs"][0]["Url"]
check(requests.get(template_url).status_code == 200, "the template URL is served", template_url)
check(requests.get(template_url[:-1] + ("0" if template_url[-1] != "0" else "1")).status_code == 404, "a changed template URL is not")
both = dict(acr_relation, HelmChartArtifactRelation={"{{ computenest::helmchart::web }}": {"ArtifactId": "web_chart", "ArtifactVersion": "1"}})
cn.update_service(m.UpdateServiceRequest(region_id="cn-hangzhou", service_id="sdk-shop", deploy_metadata=deploy_metadata(both)))
got = json.loads(cn.get_service(m.GetServiceRequest(service_id="sdk-shop")).body.deploy_metadata)
check(got["SupplierDeployMetadata"]["HelmChartArtifactRelation"] == {"{{ computenest::helmchart::web }}": {"ArtifactId": "web_chart", "ArtifactVersion": "1"}},
      "UpdateService adds the chart relation", got)
refused(lambda: cn.get_service(m.GetServiceRequest(service_id="nope-service")), "EntityNotExist.Service", "an unknown service")
refused(lambda: cn.update_service(m.UpdateServiceRequest(service_id="nope-service", deploy_metadata=deploy_metadata(acr_relation))),
        "EntityNotExist.Service", "updating an unknown service")
upload_creds = cn.get_upload_credentials(m.GetUploadCredentialsRequest(file_name="ack.yaml")).body
check(upload_creds.success and upload_creds.data.key == f"{ACCOUNT}/ack.yaml" and upload_creds.data.bucket_name, "GetUploadCredentials", upload_creds.to_map())

# --- deletes -------------------------------------------------------------------------------
refused(lambda: cn.delete_artifact(m.DeleteArtifactRequest(artifact_id="web_app")), "OperationDenied.ArtifactInUse", "an artifact a service uses")
cn.delete_artifact(m.DeleteArtifactRequest(artifact_id="web_app", artifact_version="1"))
refused(lambda: cn.get_artifact(m.GetArtifactRequest(artifact_id="web_app", artifact_version="1")), "EntityNotExist.ArtifactVersion", "a deleted version")
cn.delete_artifact(m.DeleteArtifactRequest(artifact_id="not_chart"))
refused(lambda: cn.get_artifact(m.GetArtifactRequest(artifact_id="not_chart")), "EntityNotExist.Artifact", "a deleted artifact")

# --- signatures, with the SDK's own signing code -------------------------------------------
class Signed:
    def __init__(self, action, query, date=None, nonce=None):
        self.method, self.pathname, self.query = "POST", "/", dict(query)
        self.headers = {
            "host": ENDPOINT, "x-acs-action": action, "x-acs-version": "2021-05-21",
            "x-acs-date": date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
            "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        }

    def sign(self, key_id=KEY_ID, secret=KEY_SECRET):
        payload = self.headers["x-acs-content-sha256"]
        self.headers["Authorization"] = Utils.get_authorization(self, "ACS3-HMAC-SHA256", payload, key_id, secret)
        return self

    def send(self, query=None):
        return requests.post(f"{URL}/", params=query or self.query, headers=self.headers)


def code_of(response):
    return response.status_code, response.json().get("Code")


ok = Signed("ListArtifacts", {"MaxResults": "2"}).sign()
first_send = ok.send()
check(first_send.status_code == 200, "a request signed by hand passes", first_send.text)
check(code_of(ok.send()) == (400, "SignatureNonceUsed"), "a replayed nonce is refused")
tampered = Signed("ListArtifacts", {"MaxResults": "2"}).sign()
check(code_of(tampered.send({"MaxResults": "3"})) == (400, "SignatureDoesNotMatch"), "a tampered query is refused")
swapped = Signed("ListArtifacts", {}).sign()
swapped.headers["x-acs-action"] = "DeleteArtifact"
check(code_of(swapped.send({"ArtifactId": "bundle"})) == (400, "SignatureDoesNotMatch"), "a swapped action is refused")
old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
check(code_of(Signed("ListArtifacts", {}, date=old).sign().send()) == (400, "InvalidTimeStamp.Expired"), "a date 20 minutes old")
check(code_of(Signed("ListArtifacts", {}).sign(key_id="BAKAAAAAAAAAAAAAAAAAAAA").send()) == (404, "InvalidAccessKeyId.NotFound"), "an unknown key")
unsigned = requests.post(f"{URL}/", headers={"x-acs-action": "ListArtifacts"})
check(code_of(unsigned) == (400, "MissingAuthorization"), "an unsigned call", unsigned.text)
check(code_of(Signed("NoSuchAction", {}).sign().send()) == (404, "InvalidAction.NotFound"), "an unknown action")
refused(lambda: client(secret="wrong").list_artifacts(m.ListArtifactsRequest()), "SignatureDoesNotMatch", "the SDK with a wrong secret")
long_query = Signed("ListArtifacts", {f"P{i}": "x" for i in range(600)}).sign()
check(code_of(long_query.send()) == (400, "InvalidParameter"), "too many parameters")

# Each credential only where it belongs: an account token is no signature, an access key is
# neither an account token nor a registry key.
bearer_call = requests.post(f"{URL}/", headers={"x-acs-action": "ListArtifacts", **BEARER})
check(code_of(bearer_call) == (400, "MissingAuthorization"), "an account token on the Compute Nest API", bearer_call.text)
as_bearer = requests.get(f"{URL}/v1/packages", headers={"Authorization": f"Bearer {KEY_SECRET}"})
check(as_bearer.status_code == 401, "an access key secret as an account token", as_bearer.text)
as_basic = requests.get(f"{URL}/v1/registry/token", params={"service": "x"}, auth=(KEY_ID, KEY_SECRET))
check(as_basic.status_code in (400, 401), "an access key at the registry token endpoint", as_basic.text)
check(KEY_SECRET not in bearer_call.text + as_bearer.text + as_basic.text, "no answer echoes the secret")

# A revoked key signs nothing any more.
second = requests.post(f"{URL}/v1/access-keys", json={"description": "to revoke"}, headers=BEARER).json()
client(second["access_key_id"], second["access_key_secret"]).list_artifacts(m.ListArtifactsRequest())
check(requests.delete(f"{URL}/v1/access-keys/{second['access_key_id']}", headers=BEARER).status_code == 200, "revoke")
refused(lambda: client(second["access_key_id"], second["access_key_secret"]).list_artifacts(m.ListArtifactsRequest()),
        "InvalidAccessKeyId.Inactive", "a revoked key")
keys = requests.get(f"{URL}/v1/access-keys", headers=BEARER).json()["access_keys"]
check(sorted(k["status"] for k in keys) == ["Active", "Revoked"] and all(KEY_SECRET not in json.dumps(k) and second["access_key_secret"] not in json.dumps(k) for k in keys), "listing", keys)
facts["secrets"] = [KEY_SECRET, second["access_key_secret"]]
print(json.dumps(facts))
