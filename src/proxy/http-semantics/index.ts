export type { Field, FieldList } from './fields.js';
export { CONNECTION_SPECIFIC_FIELDS, connectionListedNames, isFieldValue, isHopByHop, isLowercaseToken, isToken } from './fields.js';
export type { RequestValidation, TrailerValidation, ValidatedRequest, ValidationFailureKind } from './request-validation.js';
export { BodyLengthCounter, authorityProblem, checkBodyLength, validateRequest, validateTrailers } from './request-validation.js';
export type { ClientResponseContext, UpstreamRequestContext, ViaProtocolVersion } from './translate.js';
export { VIA_PSEUDONYM, toClientResponseHeaders, toClientTrailers, toUpstreamRequestHeaders } from './translate.js';
export { isValidStatus, responseHasNoContent, statusForbidsContentLength, statusHasNoContent } from './status.js';
export type { NormalisedTarget, TargetNormalisation } from './request-target.js';
export { mergeSlashes, normaliseTarget, removeDotSegments } from './request-target.js';
