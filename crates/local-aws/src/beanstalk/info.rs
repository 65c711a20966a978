//! RequestEnvironmentInfo and RetrieveEnvironmentInfo, as the Elastic Beanstalk API reference gives
//! them: a request starts compiling the last lines of every instance's logs (InfoType `tail`) and
//! returns nothing; a retrieve lists what was compiled, one EnvironmentInfoDescription per instance
//! (InfoType, Ec2InstanceId, SampleTimestamp, Message: a presigned S3 URL), empty until the compiling
//! is done. Only `tail` is compiled here (`bundle`, the full logs zipped, is refused by name).

use super::{Effect, Request, Store};
use crate::query::{Params, QueryError, Xml};

fn info_type(p: &Params) -> Result<&str, QueryError> {
    let kind = p.required("InfoType")?;
    match kind {
        "tail" => Ok(kind),
        "bundle" => Err(QueryError::invalid(
            "local-aws compiles tail logs only (InfoType tail); bundle logs are not modelled",
        )),
        other => Err(QueryError::invalid(format!(
            "Value {other} at 'infoType' failed to satisfy constraint: Member must satisfy enum value set: [tail, bundle]"
        ))),
    }
}

pub fn request(store: &mut Store, request: &Request) -> Result<Vec<Effect>, QueryError> {
    let p = request.params;
    info_type(p)?;
    let env = store.find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))?;
    let env_id = env.id.clone();
    // The previous compilation is replaced once the new one is done.
    Ok(vec![Effect::CompileTail { env_id }])
}

pub fn retrieve(store: &Store, p: &Params) -> Result<String, QueryError> {
    let kind = info_type(p)?;
    let env = store.find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))?;
    let mut x = Xml::new();
    x.elem("EnvironmentInfo", |x| {
        for entry in store.tail_logs.get(&env.id).into_iter().flatten() {
            x.elem("member", |x| {
                x.text("InfoType", kind)
                    .text("Ec2InstanceId", &entry.instance)
                    .time("SampleTimestamp", entry.sampled)
                    .text("Message", &entry.url);
            });
        }
    });
    Ok(x.finish())
}
