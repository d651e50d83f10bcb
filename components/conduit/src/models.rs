//! The API's request and response bodies, shaped exactly as the spec's
//! schemas. They derive `ToSchema`, so `/api/openapi.json` is generated from
//! the same types the handlers serialize.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub username: String,
    pub bio: String,
    pub image: String,
    /// Whether the caller follows this user (false when anonymous).
    pub following: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileResponse {
    pub profile: Profile,
}

/// The authenticated user, with a fresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub email: String,
    pub token: String,
    pub username: String,
    pub bio: String,
    pub image: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: User,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginUser {
    #[schema(required = true, nullable = false)]
    pub email: Option<String>,
    #[schema(required = true, nullable = false, format = Password)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginUserRequest {
    pub user: LoginUser,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(required = true, nullable = false, max_length = 64)]
    pub username: Option<String>,
    #[schema(required = true, nullable = false, max_length = 254)]
    pub email: Option<String>,
    #[schema(required = true, nullable = false, format = Password, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUserRequest {
    pub user: NewUser,
}

/// Fields to change; at least one. A `null` leaves the field unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUser {
    #[schema(nullable = false, max_length = 254)]
    pub email: Option<String>,
    #[schema(nullable = false, format = Password, max_length = 1024)]
    pub password: Option<String>,
    #[schema(nullable = false, max_length = 64)]
    pub username: Option<String>,
    #[schema(nullable = false, max_length = 2000)]
    pub bio: Option<String>,
    #[schema(nullable = false, max_length = 2048)]
    pub image: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    pub user: UpdateUser,
}

/// An article with its body (single-article responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Article {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub body: String,
    /// In the order the author gave them.
    pub tag_list: Vec<String>,
    #[schema(format = DateTime, example = "2016-02-18T03:22:56.637Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2016-02-18T03:48:35.824Z")]
    pub updated_at: String,
    pub favorited: bool,
    pub favorites_count: i64,
    pub author: Profile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SingleArticleResponse {
    pub article: Article,
}

/// An article in a list: everything but the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArticleSummary {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub tag_list: Vec<String>,
    #[schema(format = DateTime, example = "2016-02-18T03:22:56.637Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2016-02-18T03:48:35.824Z")]
    pub updated_at: String,
    pub favorited: bool,
    pub favorites_count: i64,
    pub author: Profile,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipleArticlesResponse {
    pub articles: Vec<ArticleSummary>,
    /// How many articles match the filters, over all pages.
    pub articles_count: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewArticle {
    #[schema(required = true, nullable = false, max_length = 256)]
    pub title: Option<String>,
    #[schema(required = true, nullable = false, max_length = 1024)]
    pub description: Option<String>,
    #[schema(required = true, nullable = false, max_length = 65536)]
    pub body: Option<String>,
    /// At most 32 tags of at most 64 characters each.
    #[serde(default)]
    #[schema(nullable = false, max_items = 32)]
    pub tag_list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewArticleRequest {
    pub article: NewArticle,
}

/// Fields to change; at least one. A new title gives the article a new slug.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateArticle {
    #[schema(nullable = false, max_length = 256)]
    pub title: Option<String>,
    #[schema(nullable = false, max_length = 1024)]
    pub description: Option<String>,
    #[schema(nullable = false, max_length = 65536)]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateArticleRequest {
    pub article: UpdateArticle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: i64,
    #[schema(format = DateTime, example = "2016-02-18T03:22:56.637Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2016-02-18T03:22:56.637Z")]
    pub updated_at: String,
    pub body: String,
    pub author: Profile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SingleCommentResponse {
    pub comment: Comment,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MultipleCommentsResponse {
    pub comments: Vec<Comment>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewComment {
    #[schema(required = true, nullable = false, max_length = 8192)]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCommentRequest {
    pub comment: NewComment,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagsResponse {
    pub tags: Vec<String>,
}
