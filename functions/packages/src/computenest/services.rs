//! The service operations computenest-cli needs for `import`: a Compute Nest service is a Berth
//! service (`ServiceId` = its name, always in version `draft`), whose `DeployMetadata`'s
//! `SupplierDeployMetadata` relations become the service's relations, as `PUT /v1/services`
//! reads them from a `config.yaml`. Template bodies cannot arrive this way (the CLI uploads
//! them to OSS, which Berth is not): a template Berth does not already hold is kept with an
//! empty body and named in the service's `ignored`, to be sent with `PUT /v1/services/{id}`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_shared::names::AccountId;
use berth_shared::platform::context::FunctionContext;
use berth_shared::platform::http::error::ApiError;
use berth_shared::platform::http::request::ApiPath;
use berth_shared::platform::jws::SigningKey;
use berth_shared::service::{self, PutServiceRequest, Service, VersionSelector, validate_service_name};
use berth_shared::template::IdentifierKind;
use serde::Serialize;

use super::Call;
use super::error::CnError;
use super::view::{self, Paging, REGION};

/// The only version a Berth service has in Compute Nest's terms.
pub const SERVICE_VERSION: &str = "draft";

fn service_missing(id: &str) -> CnError {
    CnError::not_found("Service", format!("The service {} does not exist.", id.chars().take(128).collect::<String>()))
}

async fn load(call: &Call<'_>, id: &str) -> Result<Option<Service>, CnError> {
    if validate_service_name(id).is_err() {
        return Ok(None);
    }
    Ok(call.context.store.get::<Service>(&service::service_path(&call.account, id)).await?.map(|d| d.value))
}

/// The capability in a template URL, made with `key`: only Berth can make it, and it changes
/// with the service.
fn template_mac(key: &SigningKey, account: &AccountId, service: &str, index: usize, updated_at: &str) -> String {
    let label = format!("berth computenest template v1\0{account}\0{service}\0{index}\0{updated_at}");
    let derived = key.derive(label.as_bytes());
    derived[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn template_url(call: &Call<'_>, service: &Service, index: usize) -> String {
    let key = call.context.signing.current();
    let mac = template_mac(key, &call.account, &service.name, index, &service.updated_at);
    format!("{}/v1/computenest/templates/{}/{}/{index}/{mac}", call.base_url, call.account, service.name)
}

/// `GET /v1/computenest/templates/{account}/{service}/{index}/{mac}`: a template body, for
/// whoever holds the URL GetService answered (computenest-cli downloads it to compare).
pub async fn template_download(
    State(context): State<FunctionContext>,
    ApiPath((account, name, index, mac)): ApiPath<(String, String, usize, String)>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("template".into());
    let account = AccountId::parse(&account).map_err(|_| not_found())?;
    validate_service_name(&name).map_err(|_| not_found())?;
    let service =
        context.store.get::<Service>(&service::service_path(&account, &name)).await?.ok_or_else(not_found)?.value;
    // Made by any configured key: a URL handed out before a rotation, or by a process already
    // signing with the next key, keeps working while that key verifies here.
    let same = context.signing.all().any(|key| {
        let expected = template_mac(key, &account, &name, index, &service.updated_at);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), mac.as_bytes()).is_ok()
    });
    let template = service.templates.get(index).filter(|_| same).ok_or_else(not_found)?;
    let mut response = (StatusCode::OK, template.body.clone()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/yaml; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `{"Service": {"DeployMetadata": ...}}`: a `config.yaml` (JSON is YAML) Berth's import reads.
#[derive(Serialize)]
struct ConfigDocument<'a> {
    #[serde(rename = "Service")]
    service: ConfigService<'a>,
}

#[derive(Serialize)]
struct ConfigService<'a> {
    #[serde(rename = "DeployMetadata")]
    deploy_metadata: &'a serde_json::Value,
}

/// Defines (or redefines) service `name` from the call's `DeployMetadata`.
async fn define(call: &Call<'_>, name: &str, existing: Option<&Service>) -> Result<Service, CnError> {
    let deploy: serde_json::Value =
        call.params.json("DeployMetadata")?.ok_or_else(|| CnError::missing("DeployMetadata"))?;
    let config = serde_json::to_string(&ConfigDocument { service: ConfigService { deploy_metadata: &deploy } })
        .map_err(CnError::internal)?;
    // A template URL Berth answered before keeps its body; any other URL's body never reached Berth.
    let mut templates = BTreeMap::new();
    let urls = {
        let config = config.clone();
        berth_shared::platform::work::off_workers(move || service::template_urls(&config))
            .await
            .map_err(ApiError::from)?
    };
    for url in urls {
        let body = existing
            .and_then(|s| {
                (0..s.templates.len())
                    .find(|i| template_url(call, s, *i) == url)
                    .and_then(|i| s.templates.get(i))
                    .map(|t| t.body.clone())
            })
            .unwrap_or_default();
        templates.insert(url, body);
    }
    let request = PutServiceRequest { config: Some(config), templates, ..PutServiceRequest::default() };
    let mut plan = berth_shared::platform::work::off_workers(move || request.plan())
        .await
        .map_err(ApiError::from)?
        .map_err(|e| match e {
            ApiError::Invalid { message, .. } => CnError::invalid("DeployMetadata", message),
            // Only a relation's artifact (a package, or its version) can be missing here.
            ApiError::NotFound(what) => CnError::not_found("Artifact", format!("{what} not found")),
            other => other.into(),
        })?;
    for template in plan.templates.iter().filter(|t| t.body.is_empty()) {
        plan.ignored.push(format!(
            "TemplateConfigs '{}': body not received (Berth has no upload store; send it with PUT /v1/services/{name})",
            template.name
        ));
    }
    let (_, service) =
        crate::services::define_service(call.context, &call.account, name, &plan).await.map_err(|e| match e {
            ApiError::Invalid { message, .. } => CnError::invalid("DeployMetadata", message),
            // Only a relation's artifact (a package, or its version) can be missing here.
            ApiError::NotFound(what) => CnError::not_found("Artifact", format!("{what} not found")),
            other => other.into(),
        })?;
    Ok(service)
}

/// CreateService / UpdateService answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Defined {
    service_id: String,
    status: &'static str,
    version: &'static str,
}

/// CreateService: a new service named `ServiceId` or `ServiceInfo.1.Name`.
pub async fn create(call: &Call<'_>) -> Result<Defined, CnError> {
    let name = match call.params.optional("ServiceId").or_else(|| call.params.optional("ServiceInfo.1.Name")) {
        Some(name) => name,
        None => return Err(CnError::missing("ServiceInfo.1.Name")),
    };
    validate_service_name(name).map_err(|e| CnError::invalid("ServiceInfo.1.Name", e.to_string()))?;
    if load(call, name).await?.is_some() {
        return Err(CnError::new(
            StatusCode::BAD_REQUEST,
            "EntityAlreadyExist.Service",
            format!("A service named {name} already exists."),
        ));
    }
    let service = define(call, name, None).await?;
    tracing::info!(account = %call.account, service = %service.name, "service created");
    Ok(Defined { service_id: service.name, status: "Draft", version: SERVICE_VERSION })
}

/// UpdateService: redefines service `ServiceId` from its `DeployMetadata`.
pub async fn update(call: &Call<'_>) -> Result<Defined, CnError> {
    let id = call.params.required("ServiceId")?;
    let existing = load(call, id).await?.ok_or_else(|| service_missing(id))?;
    let service = define(call, id, Some(&existing)).await?;
    tracing::info!(account = %call.account, service = %service.name, "service updated");
    Ok(Defined { service_id: service.name, status: "Draft", version: SERVICE_VERSION })
}

/// A `ServiceInfos` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceInfo {
    image: String,
    locale: &'static str,
    name: String,
    short_description: String,
}

/// A service in ListServices.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSummary {
    create_time: String,
    deploy_type: &'static str,
    has_draft: bool,
    service_id: String,
    service_infos: Vec<ServiceInfo>,
    service_type: &'static str,
    status: &'static str,
    update_time: String,
    version: &'static str,
    version_name: String,
}

fn info(service: &Service) -> Vec<ServiceInfo> {
    vec![ServiceInfo {
        image: String::new(),
        locale: "zh-CN",
        name: service.name.clone(),
        short_description: String::new(),
    }]
}

fn summary(service: &Service) -> ServiceSummary {
    ServiceSummary {
        create_time: service.created_at.clone(),
        deploy_type: "ros",
        has_draft: true,
        service_id: service.name.clone(),
        service_infos: info(service),
        service_type: "private",
        status: "Draft",
        update_time: service.updated_at.clone(),
        version: SERVICE_VERSION,
        version_name: SERVICE_VERSION.to_owned(),
    }
}

/// ListServices answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServicePage {
    services: Vec<ServiceSummary>,
    #[serde(flatten)]
    paging: Paging,
}

/// ListServices: by name; `Filter.N.Name` `Name`/`ServiceId` (exact) and `Version` (only
/// `draft` matches) narrow it.
pub async fn list(call: &Call<'_>) -> Result<ServicePage, CnError> {
    let filters: Vec<(&str, Vec<&str>)> = (1..=super::params::MAX_LIST)
        .map_while(|i| {
            let name = call.params.0.get(&format!("Filter.{i}.Name"))?;
            Some((name.as_str(), call.params.list(&format!("Filter.{i}.Value"))))
        })
        .collect();
    let mut services: Vec<Service> = call
        .context
        .store
        .list::<Service>(&service::services_prefix(&call.account))
        .await?
        .into_iter()
        .map(|(_, d)| d.value)
        .filter(|s| {
            filters.iter().all(|(name, values)| match *name {
                "Name" | "ServiceId" => values.is_empty() || values.contains(&s.name.as_str()),
                "Version" => values.is_empty() || values.contains(&SERVICE_VERSION),
                _ => true,
            })
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let (services, paging) = view::page(services, &call.params)?;
    Ok(ServicePage { services: services.iter().map(summary).collect(), paging })
}

/// `DeployMetadata` as GetService answers it (a JSON string): templates with URLs Berth
/// serves, and the relations, keyed by placeholder.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeployMetadata {
    supplier_deploy_metadata: BTreeMap<&'static str, BTreeMap<String, Relation>>,
    template_configs: Vec<TemplateConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Relation {
    artifact_id: String,
    artifact_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TemplateConfig {
    name: String,
    url: String,
}

fn section(kind: IdentifierKind) -> Option<&'static str> {
    match kind {
        IdentifierKind::AcrImage => Some("AcrImageArtifactRelation"),
        IdentifierKind::HelmChart => Some("HelmChartArtifactRelation"),
        IdentifierKind::File => Some("FileArtifactRelation"),
        IdentifierKind::Acr | IdentifierKind::Helm => None,
    }
}

fn deploy_metadata(call: &Call<'_>, service: &Service) -> String {
    let mut sections: BTreeMap<&'static str, BTreeMap<String, Relation>> = BTreeMap::new();
    for (key, target) in &service.relations {
        let Ok((kind, _)) = service::relation_key("relation", key) else { continue };
        let Some(name) = section(kind) else { continue };
        let version = match &target.version {
            VersionSelector::Latest => SERVICE_VERSION.to_owned(),
            VersionSelector::Number(n) => n.to_string(),
            VersionSelector::Name(n) => n.clone(),
        };
        sections.entry(name).or_default().insert(
            format!("{{{{ {key} }}}}"),
            Relation { artifact_id: target.package.clone(), artifact_version: version },
        );
    }
    let templates = service
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| TemplateConfig { name: t.name.clone(), url: template_url(call, service, i) })
        .collect();
    serde_json::to_string(&DeployMetadata { supplier_deploy_metadata: sections, template_configs: templates })
        .unwrap_or_default()
}

/// GetService answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceView {
    create_time: String,
    deploy_metadata: String,
    deploy_type: &'static str,
    service_id: String,
    service_infos: Vec<ServiceInfo>,
    service_type: &'static str,
    status: &'static str,
    /// What Berth did not use of the definition, one entry per field.
    status_detail: String,
    update_time: String,
    version: &'static str,
    version_name: String,
}

/// GetService: by `ServiceId` (or `ServiceName`), version `draft` (or none).
pub async fn get(call: &Call<'_>) -> Result<ServiceView, CnError> {
    let id = call
        .params
        .optional("ServiceId")
        .or_else(|| call.params.optional("ServiceName"))
        .ok_or_else(|| CnError::missing("ServiceId"))?;
    let service = load(call, id).await?.ok_or_else(|| service_missing(id))?;
    if let Some(version) = call.params.optional("ServiceVersion")
        && version != SERVICE_VERSION
    {
        return Err(CnError::not_found(
            "ServiceVersion",
            format!("Service {id} has only the version {SERVICE_VERSION}."),
        ));
    }
    Ok(ServiceView {
        create_time: service.created_at.clone(),
        deploy_metadata: deploy_metadata(call, &service),
        deploy_type: "ros",
        service_id: service.name.clone(),
        service_infos: info(&service),
        service_type: "private",
        status: "Draft",
        status_detail: service.ignored.join("; "),
        update_time: service.updated_at.clone(),
        version: SERVICE_VERSION,
        version_name: SERVICE_VERSION.to_owned(),
    })
}

/// `Data` of GetUploadCredentials.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadData {
    access_key_id: String,
    access_key_secret: String,
    bucket_name: &'static str,
    expire_date: String,
    key: String,
    region_id: &'static str,
    security_token: String,
}

/// GetUploadCredentials answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadAnswer {
    code: &'static str,
    data: UploadData,
    http_status_code: u16,
    message: &'static str,
    success: bool,
}

/// The bucket GetUploadCredentials names. It is not a valid OSS bucket name on purpose: Berth
/// has no OSS, and an OSS client refuses it at once instead of trying the network.
pub const NO_BUCKET: &str = "Berth_has_no_OSS";

/// GetUploadCredentials: the documented shape, with no usable credentials (Berth is not an
/// object store for uploads; templates go to `PUT /v1/services/{id}`, files to
/// `PUT /v1/packages/{name}/versions/{version}/file`).
pub async fn upload_credentials(call: &Call<'_>) -> Result<UploadAnswer, CnError> {
    let file = call.params.required("FileName")?;
    let file: String = file.rsplit('/').next().unwrap_or_default().chars().take(255).collect();
    Ok(UploadAnswer {
        code: "200",
        data: UploadData {
            access_key_id: String::new(),
            access_key_secret: String::new(),
            bucket_name: NO_BUCKET,
            expire_date: berth_shared::platform::clock::rfc3339(berth_shared::platform::clock::unix_now() + 3600),
            key: format!("{}/{file}", call.account),
            region_id: REGION,
            security_token: String::new(),
        },
        http_status_code: 200,
        message: "Berth does not store uploads; send templates with PUT /v1/services/{id}",
        success: true,
    })
}
